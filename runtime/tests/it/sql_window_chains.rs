//! SQL over window results, as a user runs it with `weir sql -f`: a window
//! aggregate of a window aggregate's result (grouped by the columns carrying
//! its windows) and a join of two window results on their windows (a window
//! join, whose rows are forgotten once the watermark passes their window's
//! end), as in Nexmark q5; the same rows through injected failures and a
//! rescale from a savepoint as without.

use std::fs;
use std::path::Path;

use crate::sql_nexmark_runs::{nexmark_script, same_rows_through_failures_and_a_rescale};
use crate::support::{assert_ok, committed_lines, run_args, run_in, sorted_lines};

/// Bids on three auctions over two 10 s windows.
const BIDS: &str = r#"{"auction": 1, "price": 10, "date_time": "2026-01-01 00:00:01"}
{"auction": 2, "price": 20, "date_time": "2026-01-01 00:00:02"}
{"auction": 1, "price": 30, "date_time": "2026-01-01 00:00:03"}
{"auction": 3, "price": 5, "date_time": "2026-01-01 00:00:04"}
{"auction": 3, "price": 6, "date_time": "2026-01-01 00:00:05"}
{"auction": 2, "price": 1, "date_time": "2026-01-01 00:00:12"}
{"auction": 1, "price": 2, "date_time": "2026-01-01 00:00:13"}
{"auction": 2, "price": 3, "date_time": "2026-01-01 00:00:14"}
"#;

/// The hottest auctions of each window (ties all kept): Nexmark q5's shape
/// over `TABLE_FUNCTION`, with `num >= maxn - slack`.
fn hot_items(table: &str, window: &str, slack: u32) -> String {
    format!(
        "SELECT hot.auction, hot.num, hot.starttime
FROM (
  SELECT auction, COUNT(*) AS num, window_start AS starttime, window_end AS endtime
  FROM TABLE({window}(TABLE {table}, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
  GROUP BY auction, window_start, window_end
) AS hot
JOIN (
  SELECT MAX(counts.num) AS maxn, counts.starttime, counts.endtime
  FROM (
    SELECT COUNT(*) AS num, window_start AS starttime, window_end AS endtime
    FROM TABLE({window}(TABLE {table}, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
    GROUP BY auction, window_start, window_end
  ) AS counts
  GROUP BY counts.starttime, counts.endtime
) AS most
ON hot.starttime = most.starttime AND hot.endtime = most.endtime AND hot.num + {slack} >= most.maxn"
    )
}

#[test]
fn the_hottest_auctions_of_each_window_come_from_a_window_aggregate_of_window_counts() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("bids.jsonl"), BIDS).unwrap();
    let script = format!(
        "CREATE TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP(3),
  WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND)
WITH ('connector' = 'filesystem', 'path' = 'bids.jsonl', 'format' = 'json');
CREATE TABLE hot (auction BIGINT, num BIGINT, starttime TIMESTAMP(3))
WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'json');
INSERT INTO hot {};",
        hot_items("bids", "TUMBLE", 0)
    );
    fs::write(dir.path().join("job.sql"), &script).unwrap();
    let explained = run_in(dir.path(), &["sql", "--explain", "-f", "job.sql"]);
    assert_ok(&explained);
    let plan = String::from_utf8_lossy(&explained.stdout);
    assert!(
        plan.contains("of the windows in (starttime, endtime)")
            && plan.contains("until the watermark passes their window's end"),
        "{plan}"
    );
    assert_ok(&run_in(dir.path(), &["sql", "-f", "job.sql", "-p", "2"]));
    // Ties are all kept: auctions 1 and 3 with two bids each in the first
    // window, auction 2 with two in the second.
    assert_eq!(
        committed_lines(&dir.path().join("out")),
        sorted_lines(&[
            r#"{"auction":1,"num":2,"starttime":"2026-01-01T00:00:00"}"#,
            r#"{"auction":3,"num":2,"starttime":"2026-01-01T00:00:00"}"#,
            r#"{"auction":2,"num":2,"starttime":"2026-01-01T00:00:10"}"#,
        ])
    );
}

/// Hot auctions over 200,000 Nexmark bids (20 s of event time, hopping
/// windows), into `out`; `weir sql` arguments to run it at `rate_limit`
/// events per second. A `regular` join matches the window ends as numbers,
/// so it keeps every row to the end.
fn nexmark_hot_items(dir: &Path, out: &str, rate_limit: Option<u32>, regular: bool) -> Vec<String> {
    let mut query = hot_items("bid", "TUMBLE", 0).replace(
        "TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND)",
        "HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND, INTERVAL '2' SECOND)",
    );
    if regular {
        query = query.replace(
            "hot.endtime = most.endtime",
            "CAST(hot.endtime AS BIGINT) = CAST(most.endtime AS BIGINT)",
        );
    }
    let script = format!(
        "CREATE TABLE hot (auction BIGINT, num BIGINT, starttime TIMESTAMP(3)) \
         WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');\n\
         INSERT INTO hot {};",
        query.replace("hot.num + 0 >=", "hot.num * 3 >=")
    );
    nexmark_script(dir, out, &script, &["bid"], rate_limit)
}

#[test]
fn window_joins_give_the_same_rows_through_failures_and_a_rescale() {
    let dir = tempfile::tempdir().unwrap();
    let expected = same_rows_through_failures_and_a_rescale(dir.path(), 200, |out, rate| {
        nexmark_hot_items(dir.path(), out, rate, false)
    });
    // Forgetting a window's rows once it ended loses no pair.
    let regular = nexmark_hot_items(dir.path(), "regular", None, true);
    let explained = run_args(dir.path(), &regular, &["--explain"]);
    assert!(
        String::from_utf8_lossy(&explained.stdout).contains("for ever"),
        "{}",
        String::from_utf8_lossy(&explained.stdout)
    );
    assert_ok(&run_args(dir.path(), &regular, &["-p", "2"]));
    assert_eq!(committed_lines(&dir.path().join("regular")), expected);
}
