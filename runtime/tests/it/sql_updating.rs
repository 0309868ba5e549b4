//! An unbounded `GROUP BY` over another's updating result, as a user runs it
//! with `weir sql -f`: the changelog it prints replays without contradiction
//! (each `-U`/`-D` takes back the row its key shows, each `+I` a key without
//! one) to the results of the whole input, and a key whose rows are all
//! taken back is deleted; `MIN`, `MAX` and `COUNT(DISTINCT ...)` forget the
//! rows taken back. Aggregates that cannot take a row back are refused by
//! name.

use std::collections::BTreeMap;
use std::fs;

use crate::support::{assert_ok, run_in, stderr};

/// Six clicks by three users, as in `sql_jobs`.
const CLICKS: &str = r#"{"user_id": "ann", "url": "/a", "bytes": 100, "ts": "2026-01-01 00:00:01"}
{"user_id": "bob", "url": "/b", "bytes": 250, "ts": "2026-01-01 00:00:04"}
{"user_id": "ann", "url": "/c", "bytes": 50, "ts": "2026-01-01 00:00:07"}
{"user_id": "ann", "url": "/a", "bytes": 300, "ts": "2026-01-01 00:00:12"}
{"user_id": "cy", "url": "/d", "bytes": 10, "ts": "2026-01-01 00:00:13"}
{"user_id": "bob", "url": "/b", "bytes": 20, "ts": "2026-01-01 00:00:25"}
"#;

const CLICKS_TABLE: &str =
    "CREATE TABLE clicks (user_id STRING, url STRING, bytes BIGINT, ts TIMESTAMP(3),
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH ('connector' = 'filesystem', 'path' = 'clicks.jsonl', 'format' = 'json');";

/// Replays the print connector's change lines, keyed by their first
/// `key_columns` columns: the rows left, or the first line that contradicts
/// what came before.
pub(crate) fn replay(
    printed: &str,
    key_columns: usize,
) -> Result<BTreeMap<String, String>, String> {
    let mut rows: BTreeMap<String, String> = BTreeMap::new();
    for line in printed.lines() {
        let (kind, row) = line.split_at(2);
        let row = row
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .ok_or_else(|| format!("not a change line: {line}"))?;
        let key = row
            .split(", ")
            .take(key_columns)
            .collect::<Vec<_>>()
            .join(", ");
        match kind {
            "+I" | "+U" => {
                if let Some(shown) = rows.insert(key, row.to_string()) {
                    return Err(format!("{line} while the key shows [{shown}]"));
                }
            }
            "-U" | "-D" => match rows.remove(&key) {
                Some(shown) if shown == row => {}
                shown => return Err(format!("{line} while the key shows {shown:?}")),
            },
            _ => return Err(format!("unknown change: {line}")),
        }
    }
    Ok(rows)
}

#[test]
fn a_group_by_over_an_updating_result_takes_back_rows_and_deletes_emptied_keys() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clicks.jsonl"), CLICKS).unwrap();
    // Users by how many clicks they made: bob moves from 1 to 2 clicks, ann
    // from 1 to 3, so the key 1 empties (cy is left out).
    let script = format!(
        "{CLICKS_TABLE}\nCREATE TABLE by_clicks (clicks BIGINT, users BIGINT, bytes BIGINT, average BIGINT) WITH ('connector' = 'print');\n\
         INSERT INTO by_clicks SELECT n, COUNT(*), SUM(total), AVG(total) FROM \
         (SELECT user_id, COUNT(*) AS n, SUM(bytes) AS total FROM clicks WHERE user_id <> 'cy' GROUP BY user_id) \
         GROUP BY n;"
    );
    fs::write(dir.path().join("job.sql"), script).unwrap();
    for batch in ["1", "2", "1000"] {
        let out = run_in(
            dir.path(),
            &["sql", "-f", "job.sql", "--batch-size", batch, "-p", "2"],
        );
        assert_ok(&out);
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        let rows = replay(&printed, 1).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        let left: Vec<&str> = rows.values().map(String::as_str).collect();
        assert_eq!(left, ["2, 1, 270, 270", "3, 1, 450, 450"], "{printed}");
        if batch == "1" {
            // One click at a time, the key 1 holds a user first and none at
            // the end: it is deleted (which users it held on the way depends on
            // how the two subtasks' updates interleave).
            assert!(printed.contains("-D[1, "), "{printed}");
        }
    }
}

#[test]
fn min_max_and_count_distinct_over_an_updating_result_forget_the_rows_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clicks.jsonl"), CLICKS).unwrap();
    // Each user's total moves with its count: ann's passes 100 (at 1 click)
    // and 150 (at 2) on its way to 450 (at 3), bob's 250 (at 1) on its way to
    // 270 (at 2). Whatever a key held on the way is taken back.
    let script = format!(
        "{CLICKS_TABLE}\nCREATE TABLE spread (clicks BIGINT, least BIGINT, most BIGINT, totals BIGINT) WITH ('connector' = 'print');\n\
         INSERT INTO spread SELECT n, MIN(total), MAX(total), COUNT(DISTINCT total) FROM \
         (SELECT user_id, COUNT(*) AS n, SUM(bytes) AS total FROM clicks GROUP BY user_id) GROUP BY n;"
    );
    fs::write(dir.path().join("job.sql"), script).unwrap();
    for batch in ["1", "2", "1000"] {
        let out = run_in(
            dir.path(),
            &["sql", "-f", "job.sql", "--batch-size", batch, "-p", "2"],
        );
        assert_ok(&out);
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        let rows = replay(&printed, 1).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        let left: Vec<&str> = rows.values().map(String::as_str).collect();
        assert_eq!(
            left,
            ["1, 10, 10, 1", "2, 270, 270, 1", "3, 450, 450, 1"],
            "--batch-size {batch}:\n{printed}"
        );
    }
}

#[test]
fn an_aggregate_that_cannot_take_a_row_back_is_refused_over_an_updating_result() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clicks.jsonl"), CLICKS).unwrap();
    let script = format!(
        "{CLICKS_TABLE}\nCREATE TABLE top (clicks BIGINT, totals BIGINT) WITH ('connector' = 'print');\n\
         INSERT INTO top SELECT n, SUM(DISTINCT total) FROM \
         (SELECT user_id, COUNT(*) AS n, SUM(bytes) AS total FROM clicks GROUP BY user_id) GROUP BY n;"
    );
    fs::write(dir.path().join("job.sql"), script).unwrap();
    let out = run_in(dir.path(), &["sql", "-f", "job.sql"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("over an updating result") && stderr(&out).contains("sum"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_key_not_updated_for_the_state_ttl_is_forgotten_and_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    // Six bids half a second apart, the key kept for 100 ms without an
    // update: each bid finds it forgotten and inserts it anew. Without the
    // TTL the count would grow through -U/+U changes.
    let script = "SET 'table.exec.state.ttl' = '100 ms';
CREATE TABLE counts (k STRING, bids BIGINT) WITH ('connector' = 'print');
INSERT INTO counts SELECT 'all', COUNT(*) FROM bid GROUP BY 'all';";
    fs::write(dir.path().join("job.sql"), script).unwrap();
    let out = run_in(
        dir.path(),
        &[
            "sql",
            "-f",
            "job.sql",
            "--option",
            "bid.events.num=10",
            "--option",
            "bid.rate-limit=2",
        ],
    );
    assert_ok(&out);
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut bids = 0;
    for line in printed.lines() {
        let n = line
            .strip_prefix("+I[all, ")
            .and_then(|l| l.strip_suffix(']'))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("not a fresh insert: {line}\n{printed}"));
        bids += n;
    }
    assert_eq!(bids, 6, "{printed}");
    assert!(printed.lines().count() > 1, "{printed}");
}
