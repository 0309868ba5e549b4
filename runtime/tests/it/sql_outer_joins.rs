//! SQL outer joins as a user runs them with `weir sql -f`: a preserved
//! side's row without a partner goes out padded with NULLs. In a regular
//! outer join it goes out at once and is deleted when its first partner
//! arrives; the changelog, folded, leaves exactly the rows of the outer join
//! of the two files, and never deletes a row it did not insert. In an
//! interval outer join it goes out once the watermark passes it, and the
//! result only appends: the pairs of the inner join and each unpaired row
//! once, through failures and a rescale.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::sql_interval_joins::{early_bids, ORDERS, SHIPMENTS};
use crate::sql_joins::{CLICKS, USERS};
use crate::sql_nexmark_runs::{nexmark_script, same_rows_through_failures_and_a_rescale};
use crate::support::{assert_ok, committed_lines, run_args, run_in, sorted_lines};

/// The rows `query` leaves over the clicks and users files: its printed
/// changelog folded, inserts added and deletions taken away (each must
/// take away a row there).
fn outer_joined(query: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clicks.jsonl"), CLICKS).unwrap();
    fs::write(dir.path().join("users.jsonl"), USERS).unwrap();
    let script = format!(
        "CREATE TABLE clicks (user_id STRING, url STRING, bytes BIGINT)
           WITH ('connector' = 'filesystem', 'path' = 'clicks.jsonl', 'format' = 'json');
         CREATE TABLE users (id STRING, country STRING)
           WITH ('connector' = 'filesystem', 'path' = 'users.jsonl', 'format' = 'json');
         CREATE TABLE result (user_id STRING, url STRING, country STRING) WITH ('connector' = 'print');
         INSERT INTO result {query};"
    );
    fs::write(dir.path().join("job.sql"), script).unwrap();
    let out = run_in(dir.path(), &["sql", "-f", "job.sql", "-p", "2"]);
    assert_ok(&out);
    let mut rows: Vec<String> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let (kind, row) = line.split_at(2);
        match kind {
            "+I" => rows.push(row.to_string()),
            "-D" => {
                let at = rows
                    .iter()
                    .position(|r| r == row)
                    .unwrap_or_else(|| panic!("{line} deletes a row never inserted"));
                rows.remove(at);
            }
            _ => panic!("an outer join of appended rows emits {line}"),
        }
    }
    rows.sort();
    rows
}

#[test]
fn a_left_join_pads_the_clicks_without_a_user() {
    let rows = outer_joined(
        "SELECT c.user_id, c.url, u.country FROM clicks AS c LEFT JOIN users AS u ON c.user_id = u.id",
    );
    assert_eq!(
        rows,
        sorted_lines(&[
            "[ann, /a, NO]",
            "[ann, /a, NO]",
            "[ann, /c, NO]",
            "[bob, /b, PT]",
            "[bob, /b, PT]",
            "[NULL, /x, NULL]",
            "[cy, /d, NULL]",
        ])
    );
}

#[test]
fn a_full_join_pads_both_sides_and_its_condition_decides_who_pairs() {
    let rows = outer_joined(
        "SELECT c.user_id, c.url, u.country FROM clicks AS c FULL JOIN users AS u \
         ON c.user_id = u.id AND c.bytes > 60",
    );
    assert_eq!(
        rows,
        sorted_lines(&[
            "[ann, /a, NO]",
            "[ann, /a, NO]",
            "[ann, /c, NULL]",
            "[bob, /b, PT]",
            "[bob, /b, NULL]",
            "[NULL, /x, NULL]",
            "[cy, /d, NULL]",
            "[NULL, NULL, ??]",
            "[NULL, NULL, JP]",
        ])
    );
}

#[test]
fn a_left_self_join_pads_each_click_without_a_larger_one_of_its_user() {
    let rows = outer_joined(
        "SELECT c.user_id, c.url, d.url FROM clicks AS c LEFT JOIN clicks AS d \
         ON c.user_id = d.user_id AND c.bytes < d.bytes",
    );
    assert_eq!(
        rows,
        sorted_lines(&[
            "[ann, /a, /a]",
            "[ann, /c, /a]",
            "[ann, /c, /a]",
            "[ann, /a, NULL]",
            "[bob, /b, /b]",
            "[bob, /b, NULL]",
            "[NULL, /x, NULL]",
            "[cy, /d, NULL]",
        ])
    );
}

/// Orders `kind` JOIN shipments within an hour after them, into a file: the
/// committed lines.
fn shipped(kind: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("orders.jsonl"), ORDERS).unwrap();
    fs::write(dir.path().join("shipments.jsonl"), SHIPMENTS).unwrap();
    let script = format!(
        "CREATE TABLE orders (id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH ('connector' = 'filesystem', 'path' = 'orders.jsonl', 'format' = 'json');
         CREATE TABLE shipments (order_id BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
           WITH ('connector' = 'filesystem', 'path' = 'shipments.jsonl', 'format' = 'json');
         CREATE TABLE shipped (id BIGINT, order_id BIGINT, ordered TIMESTAMP(3), shipped TIMESTAMP(3))
           WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'json');
         INSERT INTO shipped SELECT o.id, s.order_id, o.ts, s.ts FROM orders o {kind} JOIN shipments s
           ON o.id = s.order_id AND s.ts BETWEEN o.ts AND o.ts + INTERVAL '1' HOUR;"
    );
    fs::write(dir.path().join("job.sql"), script).unwrap();
    let explained = run_in(dir.path(), &["sql", "--explain", "-f", "job.sql"]);
    assert_ok(&explained);
    let plan = String::from_utf8_lossy(&explained.stdout);
    assert!(
        plan.contains("an interval join") && plan.contains("met no partner goes out padded"),
        "{plan}"
    );
    // A file sink takes only appended rows: an updating result is refused.
    assert_ok(&run_in(dir.path(), &["sql", "-f", "job.sql", "-p", "2"]));
    committed_lines(&dir.path().join("out"))
}

#[test]
fn an_interval_outer_join_pads_the_rows_left_alone_once_the_watermark_passes_them() {
    let pairs = [
        r#"{"id":1,"order_id":1,"ordered":"2026-01-01T10:00:00","shipped":"2026-01-01T10:20:00"}"#,
        r#"{"id":1,"order_id":1,"ordered":"2026-01-01T10:00:00","shipped":"2026-01-01T11:00:00"}"#,
        r#"{"id":2,"order_id":2,"ordered":"2026-01-01T10:30:00","shipped":"2026-01-01T11:30:00"}"#,
    ];
    // Order 3's shipment came a second after its hour.
    let order = r#"{"id":3,"ordered":"2026-01-01T11:00:00"}"#;
    let shipments = [
        r#"{"order_id":2,"shipped":"2026-01-01T10:29:59"}"#,
        r#"{"order_id":3,"shipped":"2026-01-01T12:00:01"}"#,
    ];
    let mut left = pairs.to_vec();
    left.push(order);
    assert_eq!(shipped("LEFT"), sorted_lines(&left));
    let mut full = left.clone();
    full.extend(shipments);
    assert_eq!(shipped("FULL"), sorted_lines(&full));
    let mut right = pairs.to_vec();
    right.extend(shipments);
    assert_eq!(shipped("RIGHT"), sorted_lines(&right));
}

/// Auctions LEFT JOIN the bids within a second after they opened, over the
/// first 200,000 events, into `out`, at `rate_limit` events per second per
/// table: `weir sql` arguments.
fn auctions_and_early_bids(dir: &Path, out: &str, rate_limit: Option<u32>) -> Vec<String> {
    let script = format!(
        "CREATE TABLE early (auction BIGINT, bidder BIGINT, price BIGINT, opened TIMESTAMP(3), bid TIMESTAMP(3))
           WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');
         INSERT INTO early SELECT a.id, b.bidder, b.price, a.date_time, b.date_time
         FROM auction AS a LEFT JOIN bid AS b
           ON a.id = b.auction AND b.date_time BETWEEN a.date_time AND a.date_time + INTERVAL '1' SECOND;"
    );
    nexmark_script(dir, out, &script, &["bid", "auction"], rate_limit)
}

#[test]
fn an_interval_outer_join_is_exactly_once_through_failures_and_a_rescale() {
    let dir = tempfile::tempdir().unwrap();
    let rows = same_rows_through_failures_and_a_rescale(dir.path(), 1000, |out, rate| {
        auctions_and_early_bids(dir.path(), out, rate)
    });
    // Its pairs are the inner join's, each once.
    let inner = early_bids(dir.path(), "inner", false, None);
    assert_ok(&run_args(dir.path(), &inner, &["-p", "2"]));
    let (pairs, alone): (Vec<&String>, Vec<&String>) = rows
        .iter()
        .partition(|line| field(line, "bidder").is_some());
    let inner = committed_lines(&dir.path().join("inner"));
    assert_eq!(pairs, inner.iter().collect::<Vec<_>>());
    // Every other auction once, padded.
    let script = "CREATE TABLE opened (id BIGINT, date_time TIMESTAMP(3))
           WITH ('connector' = 'filesystem', 'path' = 'opened', 'format' = 'json');
         INSERT INTO opened SELECT id, date_time FROM auction;";
    let all = nexmark_script(dir.path(), "opened", script, &["auction"], None);
    assert_ok(&run_args(dir.path(), &all, &[]));
    let paired: BTreeSet<i64> = pairs.iter().filter_map(|l| field(l, "auction")).collect();
    let mut expected: Vec<i64> = committed_lines(&dir.path().join("opened"))
        .iter()
        .filter_map(|l| field(l, "id"))
        .filter(|id| !paired.contains(id))
        .collect();
    let mut padded: Vec<i64> = alone.iter().filter_map(|l| field(l, "auction")).collect();
    expected.sort_unstable();
    padded.sort_unstable();
    assert!(!padded.is_empty() && !paired.is_empty());
    assert_eq!(padded, expected);
}

/// Whole-number field `name` of the JSON object on `line`, unless missing
/// or null.
fn field(line: &str, name: &str) -> Option<i64> {
    let object: Value = serde_json::from_str(line).unwrap();
    object.get(name).and_then(Value::as_i64)
}
