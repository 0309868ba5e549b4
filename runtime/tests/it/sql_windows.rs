//! SQL windows their aggregate assigns, as a user runs them with `weir sql
//! -f`: `SESSION` windows (per key, merged when a row bridges two; the same
//! rows through injected failures and a rescale from a savepoint as without)
//! and windows on processing time (each row counted once, in a window of the
//! clock it arrived at).

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::sql_nexmark_runs::{nexmark_script, same_rows_through_failures_and_a_rescale};
use crate::support::{assert_ok, committed_lines, run_in, sorted_lines};

/// Clicks of four users; `dee`'s third click comes late and bridges her two
/// sessions (gap 5 s) into one.
const CLICKS: &str = r#"{"user_id": "ann", "bytes": 100, "ts": "2026-01-01 00:00:01"}
{"user_id": "bob", "bytes": 250, "ts": "2026-01-01 00:00:04"}
{"user_id": "ann", "bytes": 50, "ts": "2026-01-01 00:00:07"}
{"user_id": "ann", "bytes": 300, "ts": "2026-01-01 00:00:12"}
{"user_id": "cy", "bytes": 10, "ts": "2026-01-01 00:00:13"}
{"user_id": "bob", "bytes": 20, "ts": "2026-01-01 00:00:25"}
{"user_id": "dee", "bytes": 1, "ts": "2026-01-01 00:00:40"}
{"user_id": "dee", "bytes": 2, "ts": "2026-01-01 00:00:50"}
{"user_id": "dee", "bytes": 4, "ts": "2026-01-01 00:00:45"}
"#;

#[test]
fn sessions_close_after_the_gap_and_merge_when_a_row_bridges_them() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clicks.jsonl"), CLICKS).unwrap();
    let script = "CREATE TABLE clicks (user_id STRING, bytes BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = 'clicks.jsonl', 'format' = 'json');
CREATE TABLE sessions (user_id STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), clicks BIGINT, total BIGINT, big BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'json');
INSERT INTO sessions
SELECT user_id, window_start, window_end, COUNT(*), SUM(bytes), COUNT(*) FILTER (WHERE bytes >= 100)
FROM TABLE(SESSION(TABLE clicks PARTITION BY user_id, DESCRIPTOR(ts), INTERVAL '5' SECOND))
GROUP BY user_id, window_start, window_end;";
    fs::write(dir.path().join("job.sql"), script).unwrap();
    assert_ok(&run_in(dir.path(), &["sql", "-f", "job.sql", "-p", "2"]));
    // Windows that touch merge, as Flink's do: ann's click at 12 s joins the
    // session of 7 s, which ended at 12 s.
    assert_eq!(
        committed_lines(&dir.path().join("out")),
        sorted_lines(&[
            r#"{"user_id":"ann","window_start":"2026-01-01T00:00:01","window_end":"2026-01-01T00:00:06","clicks":1,"total":100,"big":1}"#,
            r#"{"user_id":"ann","window_start":"2026-01-01T00:00:07","window_end":"2026-01-01T00:00:17","clicks":2,"total":350,"big":1}"#,
            r#"{"user_id":"bob","window_start":"2026-01-01T00:00:04","window_end":"2026-01-01T00:00:09","clicks":1,"total":250,"big":1}"#,
            r#"{"user_id":"bob","window_start":"2026-01-01T00:00:25","window_end":"2026-01-01T00:00:30","clicks":1,"total":20,"big":0}"#,
            r#"{"user_id":"cy","window_start":"2026-01-01T00:00:13","window_end":"2026-01-01T00:00:18","clicks":1,"total":10,"big":0}"#,
            r#"{"user_id":"dee","window_start":"2026-01-01T00:00:40","window_end":"2026-01-01T00:00:55","clicks":3,"total":7,"big":0}"#,
        ])
    );
}

/// Bidders' sessions (gap 300 ms) over the Nexmark bids, into `out`; `weir
/// sql` arguments to run it, at `rate_limit` events per second.
fn bidder_sessions(dir: &Path, out: &str, rate_limit: Option<u32>) -> Vec<String> {
    let script = format!(
        "CREATE TABLE sessions (bidder BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT, top BIGINT) \
         WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');\n\
         INSERT INTO sessions SELECT bidder, window_start, window_end, COUNT(*), MAX(price) \
         FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(date_time), INTERVAL '300' MILLISECOND)) \
         GROUP BY bidder, window_start, window_end;"
    );
    nexmark_script(dir, out, &script, &["bid"], rate_limit)
}

#[test]
fn sessions_give_the_same_rows_through_failures_and_a_rescale() {
    let dir = tempfile::tempdir().unwrap();
    same_rows_through_failures_and_a_rescale(dir.path(), 1000, |out, rate| {
        bidder_sessions(dir.path(), out, rate)
    });
}

/// The committed JSON rows of `dir`.
fn rows(dir: &Path) -> Vec<Value> {
    committed_lines(dir)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The sum of `column` over `rows`.
fn sum(rows: &[Value], column: &str) -> i64 {
    rows.iter().map(|r| r[column].as_i64().unwrap()).sum()
}

#[test]
fn processing_time_windows_count_every_row_once_in_a_window_of_the_clock() {
    let dir = tempfile::tempdir().unwrap();
    // 30,000 events at 15,000 a second: two seconds of the clock.
    let script = "CREATE TABLE bids_now (bidder BIGINT, price BIGINT, seen AS PROCTIME())
WITH ('connector' = 'nexmark', 'kind' = 'bid', 'events.num' = '30000', 'rate-limit' = '15000');
CREATE TABLE every_bid (price BIGINT) WITH ('connector' = 'filesystem', 'path' = 'all', 'format' = 'json');
CREATE TABLE per_second (window_start TIMESTAMP(3), window_end TIMESTAMP(3), bids BIGINT, total BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'seconds', 'format' = 'json');
CREATE TABLE per_bidder (bidder BIGINT, bids BIGINT, total BIGINT)
WITH ('connector' = 'filesystem', 'path' = 'bidders', 'format' = 'json');
INSERT INTO every_bid SELECT price FROM bids_now;
INSERT INTO per_second SELECT window_start, window_end, COUNT(*), SUM(price)
FROM TABLE(TUMBLE(TABLE bids_now, DESCRIPTOR(seen), INTERVAL '1' SECOND))
GROUP BY window_start, window_end;
INSERT INTO per_bidder SELECT bidder, COUNT(*), SUM(price)
FROM TABLE(SESSION(TABLE bids_now PARTITION BY bidder, DESCRIPTOR(seen), INTERVAL '1' HOUR))
GROUP BY bidder, window_start, window_end;";
    fs::write(dir.path().join("job.sql"), script).unwrap();
    let started = chrono::Utc::now().naive_utc();
    assert_ok(&run_in(dir.path(), &["sql", "-f", "job.sql", "-p", "2"]));
    let every = rows(&dir.path().join("all"));
    let (bids, total) = (every.len() as i64, sum(&every, "price"));
    assert!(bids > 20_000, "{bids} bids");

    let seconds = rows(&dir.path().join("seconds"));
    assert_eq!(
        (sum(&seconds, "bids"), sum(&seconds, "total")),
        (bids, total)
    );
    let mut starts: Vec<&str> = seconds
        .iter()
        .map(|r| r["window_start"].as_str().unwrap())
        .collect();
    starts.sort();
    starts.dedup();
    assert!(
        starts.len() == seconds.len() && seconds.len() >= 2,
        "one row per second of the run: {seconds:?}"
    );
    // The windows are of the clock the job ran at, not of the bids' times.
    let first = chrono::NaiveDateTime::parse_from_str(starts[0], "%Y-%m-%dT%H:%M:%S")
        .unwrap_or_else(|e| panic!("{}: {e}", starts[0]));
    let skew = (first - started).num_seconds().abs();
    assert!(skew < 60, "first window {first}, run started {started}");

    // One session per bidder: the run is shorter than the gap.
    let bidders = rows(&dir.path().join("bidders"));
    assert_eq!(
        (sum(&bidders, "bids"), sum(&bidders, "total")),
        (bids, total)
    );
    let mut keys: Vec<i64> = bidders
        .iter()
        .map(|r| r["bidder"].as_i64().unwrap())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), bidders.len());
}
