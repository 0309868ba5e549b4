//! SQL jobs as a user runs them with `weir sql -f`: a golden output per
//! construct over a small file of clicks, and windowed queries over the
//! Nexmark generator that give the same rows through injected failures and
//! through a rescale from a savepoint as without.

use std::fs;
use std::path::Path;

use crate::sql_nexmark_runs::{nexmark_script, same_rows_through_failures_and_a_rescale};
use crate::support::{
    assert_ok, committed_lines, run_args, run_in, savepoint_of, sorted_lines, stderr,
};

/// Six clicks by three users over 25 seconds, in order.
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

/// Runs `columns` (the output table's) filled by `query` over the clicks in
/// a fresh directory; returns the committed output lines, sorted.
fn golden(columns: &str, query: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clicks.jsonl"), CLICKS).unwrap();
    let script = format!(
        "{CLICKS_TABLE}\nCREATE TABLE result ({columns}) WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'json');\nINSERT INTO result {query};"
    );
    fs::write(dir.path().join("job.sql"), script).unwrap();
    let out = run_in(dir.path(), &["sql", "-f", "job.sql", "-p", "2"]);
    assert_ok(&out);
    committed_lines(&dir.path().join("out"))
}

#[test]
fn projections_and_scalar_functions() {
    let out = golden(
        "who STRING, kb DOUBLE, size STRING, page STRING, n INT",
        "SELECT UPPER(user_id), CAST(bytes AS DOUBLE) / 100, CASE WHEN bytes >= 100 THEN 'big' ELSE 'small' END, \
         CONCAT(user_id, url), CHAR_LENGTH(url) FROM clicks WHERE user_id = 'ann'",
    );
    assert_eq!(
        out,
        sorted_lines(&[
            r#"{"who":"ANN","kb":1.0,"size":"big","page":"ann/a","n":2}"#,
            r#"{"who":"ANN","kb":0.5,"size":"small","page":"ann/c","n":2}"#,
            r#"{"who":"ANN","kb":3.0,"size":"big","page":"ann/a","n":2}"#,
        ])
    );
}

#[test]
fn filters_keep_the_rows_their_condition_holds_for() {
    let out = golden(
        "user_id STRING, bytes BIGINT",
        "SELECT user_id, bytes FROM clicks WHERE bytes >= 100 AND user_id <> 'bob' OR url = '/d'",
    );
    assert_eq!(
        out,
        sorted_lines(&[
            r#"{"user_id":"ann","bytes":100}"#,
            r#"{"user_id":"ann","bytes":300}"#,
            r#"{"user_id":"cy","bytes":10}"#,
        ])
    );
}

#[test]
fn tumbling_windows_aggregate_each_key_once_per_window() {
    let out = golden(
        "user_id STRING, window_start TIMESTAMP(3), clicks BIGINT, total BIGINT, avg_bytes DOUBLE, urls BIGINT, big BIGINT, least BIGINT",
        "SELECT user_id, window_start, COUNT(*), SUM(bytes), AVG(bytes), COUNT(DISTINCT url), \
         COUNT(*) FILTER (WHERE bytes > 60), MIN(bytes) \
         FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)) \
         GROUP BY user_id, window_start, window_end",
    );
    assert_eq!(
        out,
        sorted_lines(&[
            r#"{"user_id":"ann","window_start":"2026-01-01T00:00:00","clicks":2,"total":150,"avg_bytes":75.0,"urls":2,"big":1,"least":50}"#,
            r#"{"user_id":"bob","window_start":"2026-01-01T00:00:00","clicks":1,"total":250,"avg_bytes":250.0,"urls":1,"big":1,"least":250}"#,
            r#"{"user_id":"ann","window_start":"2026-01-01T00:00:10","clicks":1,"total":300,"avg_bytes":300.0,"urls":1,"big":1,"least":300}"#,
            r#"{"user_id":"cy","window_start":"2026-01-01T00:00:10","clicks":1,"total":10,"avg_bytes":10.0,"urls":1,"big":0,"least":10}"#,
            r#"{"user_id":"bob","window_start":"2026-01-01T00:00:20","clicks":1,"total":20,"avg_bytes":20.0,"urls":1,"big":0,"least":20}"#,
        ])
    );
}

#[test]
fn a_window_without_keys_aggregates_all_its_rows_and_a_global_group_by_all_rows() {
    let out = golden(
        "window_start TIMESTAMP(3), clicks BIGINT, users BIGINT",
        "SELECT window_start, COUNT(*), COUNT(DISTINCT user_id) \
         FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)) \
         GROUP BY window_start, window_end",
    );
    assert_eq!(
        out,
        sorted_lines(&[
            r#"{"window_start":"2026-01-01T00:00:00","clicks":3,"users":2}"#,
            r#"{"window_start":"2026-01-01T00:00:10","clicks":2,"users":2}"#,
            r#"{"window_start":"2026-01-01T00:00:20","clicks":1,"users":1}"#,
        ])
    );
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clicks.jsonl"), CLICKS).unwrap();
    let script = format!(
        "{CLICKS_TABLE}\nCREATE TABLE totals (clicks BIGINT, total BIGINT) WITH ('connector' = 'print');\n\
         INSERT INTO totals SELECT COUNT(*), SUM(bytes) FROM clicks;"
    );
    fs::write(dir.path().join("job.sql"), script).unwrap();
    let printed = run_in(
        dir.path(),
        &["sql", "-f", "job.sql", "--batch-size", "4", "-p", "2"],
    );
    assert_ok(&printed);
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout),
        "+I[4, 700]\n-U[4, 700]\n+U[6, 730]\n"
    );
}

#[test]
fn hopping_windows_count_a_row_in_every_window_it_falls_in() {
    let out = golden(
        "user_id STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), clicks BIGINT",
        "SELECT user_id, window_start, window_end, COUNT(*) \
         FROM TABLE(HOP(TABLE clicks, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND)) \
         GROUP BY user_id, window_start, window_end",
    );
    let row = |user: &str, start: &str, end: &str, n: u32| {
        format!(
            r#"{{"user_id":"{user}","window_start":"{start}","window_end":"{end}","clicks":{n}}}"#
        )
    };
    let (m5, z, s5, s10, s15, s20, s25, s30, s35) = (
        "2025-12-31T23:59:55",
        "2026-01-01T00:00:00",
        "2026-01-01T00:00:05",
        "2026-01-01T00:00:10",
        "2026-01-01T00:00:15",
        "2026-01-01T00:00:20",
        "2026-01-01T00:00:25",
        "2026-01-01T00:00:30",
        "2026-01-01T00:00:35",
    );
    let mut expected = vec![
        row("ann", m5, s5, 1),
        row("bob", m5, s5, 1),
        row("ann", z, s10, 2),
        row("bob", z, s10, 1),
        row("ann", s5, s15, 2),
        row("cy", s5, s15, 1),
        row("ann", s10, s20, 1),
        row("cy", s10, s20, 1),
        row("bob", s20, s30, 1),
        row("bob", s25, s35, 1),
    ];
    expected.sort();
    assert_eq!(out, expected);
}

#[test]
fn cumulating_windows_grow_by_their_step() {
    let out = golden(
        "user_id STRING, window_end TIMESTAMP(3), total BIGINT",
        "SELECT user_id, window_end, SUM(bytes) \
         FROM TABLE(CUMULATE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '5' SECOND, INTERVAL '10' SECOND)) \
         GROUP BY user_id, window_start, window_end",
    );
    let row = |user: &str, end: &str, total: u32| {
        format!(r#"{{"user_id":"{user}","window_end":"2026-01-01T00:00:{end}","total":{total}}}"#)
    };
    let mut expected = vec![
        row("ann", "05", 100),
        row("ann", "10", 150),
        row("ann", "15", 300),
        row("ann", "20", 300),
        row("bob", "05", 250),
        row("bob", "10", 250),
        row("bob", "30", 20),
        row("cy", "15", 10),
        row("cy", "20", 10),
    ];
    expected.sort();
    assert_eq!(out, expected);
}

#[test]
fn union_all_keeps_every_row_of_both_queries() {
    let out = golden(
        "user_id STRING, why STRING",
        "SELECT user_id, 'big' FROM clicks WHERE bytes > 200 \
         UNION ALL SELECT user_id, 'late' FROM clicks WHERE ts > TIMESTAMP '2026-01-01 00:00:20'",
    );
    assert_eq!(
        out,
        sorted_lines(&[
            r#"{"user_id":"bob","why":"big"}"#,
            r#"{"user_id":"ann","why":"big"}"#,
            r#"{"user_id":"bob","why":"late"}"#,
        ])
    );
}

#[test]
fn a_window_table_function_alone_tags_each_row_with_its_window() {
    let out = golden(
        "url STRING, window_start TIMESTAMP(3), window_time TIMESTAMP(3)",
        "SELECT url, window_start, window_time FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND)) WHERE user_id = 'cy'",
    );
    assert_eq!(
        out,
        sorted_lines(&[
            r#"{"url":"/d","window_start":"2026-01-01T00:00:10","window_time":"2026-01-01T00:00:19.999"}"#
        ])
    );
}

#[test]
fn the_print_connector_writes_flinks_change_lines() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clicks.jsonl"), CLICKS).unwrap();
    let script = format!(
        "{CLICKS_TABLE}\nCREATE TABLE shown (user_id STRING, bytes BIGINT) WITH ('connector' = 'print', 'print-identifier' = 'big');\n\
         INSERT INTO shown SELECT user_id, bytes FROM clicks WHERE bytes > 200;"
    );
    fs::write(dir.path().join("job.sql"), script).unwrap();
    let out = run_in(dir.path(), &["sql", "-f", "job.sql"]);
    assert_ok(&out);
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(printed, "big> +I[bob, 250]\nbig> +I[ann, 300]\n");
}

#[test]
fn an_unbounded_group_by_emits_a_changelog_of_each_keys_results() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clicks.jsonl"), CLICKS).unwrap();
    let script = format!(
        "{CLICKS_TABLE}\nCREATE TABLE totals (user_id STRING, clicks BIGINT, total BIGINT) WITH ('connector' = 'print');\n\
         INSERT INTO totals SELECT user_id, COUNT(*), SUM(bytes) FROM clicks GROUP BY user_id;"
    );
    fs::write(dir.path().join("job.sql"), script).unwrap();
    // Two clicks a batch: a key's result changes from one batch to the next.
    let out = run_in(dir.path(), &["sql", "-f", "job.sql", "--batch-size", "2"]);
    assert_ok(&out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "+I[ann, 1, 100]\n+I[bob, 1, 250]\n-U[ann, 1, 100]\n+U[ann, 3, 450]\n+I[cy, 1, 10]\n-U[bob, 1, 250]\n+U[bob, 2, 270]\n"
    );
}

#[test]
fn an_updating_result_goes_only_where_updates_can() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clicks.jsonl"), CLICKS).unwrap();
    let script = format!(
        "{CLICKS_TABLE}\nCREATE TABLE totals (user_id STRING, clicks BIGINT) WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'json');\n\
         INSERT INTO totals SELECT user_id, COUNT(*) FROM clicks GROUP BY user_id;"
    );
    fs::write(dir.path().join("job.sql"), script).unwrap();
    let out = run_in(dir.path(), &["sql", "-f", "job.sql"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot take an updating result"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_record_that_does_not_fit_its_table_fails_the_job_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let bad = CLICKS.replace(r#""bytes": 50"#, r#""bytes": "fifty""#);
    fs::write(dir.path().join("clicks.jsonl"), bad).unwrap();
    let script = format!(
        "{CLICKS_TABLE}\nCREATE TABLE shown (user_id STRING) WITH ('connector' = 'blackhole');\nINSERT INTO shown SELECT user_id FROM clicks;"
    );
    fs::write(dir.path().join("job.sql"), script).unwrap();
    let out = run_in(dir.path(), &["sql", "-f", "job.sql", "--max-restarts", "0"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("does not fit the table") && err.contains("fifty"),
        "{err}"
    );
}

#[test]
fn a_table_option_set_on_the_command_line_is_checked_like_the_tables_own() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("job.sql"), "CREATE TABLE out (price BIGINT) WITH ('connector' = 'blackhole');\nINSERT INTO out SELECT price FROM bid;").unwrap();
    let unknown = run_in(
        dir.path(),
        &["sql", "-f", "job.sql", "--option", "bids.events.num=10"],
    );
    assert!(
        stderr(&unknown).contains("--option bids.events.num=10: no table `bids`"),
        "{}",
        stderr(&unknown)
    );
    let wrong = run_in(
        dir.path(),
        &["sql", "-f", "job.sql", "--option", "bid.kind=bids"],
    );
    assert!(
        !wrong.status.success() && stderr(&wrong).contains("kind"),
        "{}",
        stderr(&wrong)
    );
    let bounded = run_in(
        dir.path(),
        &["sql", "-f", "job.sql", "--option", "bid.events.num=5000"],
    );
    assert_ok(&bounded);
    // The bids among 5,000 events: 46 in 50.
    assert!(
        stderr(&bounded).contains("4600 records read"),
        "{}",
        stderr(&bounded)
    );
}

/// A windowed Nexmark query writing into `out`: bids per auction per
/// second; `weir sql` arguments to run it, at `rate_limit` events per second.
/// 20 s of event time, so that windows fire before a savepoint 1 s in (with 8
/// key groups, the generator's splits are 0.8 s of event time apart).
fn nexmark_windows(dir: &Path, out: &str, rate_limit: Option<u32>) -> Vec<String> {
    let script = format!(
        "CREATE TABLE counts (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, top BIGINT) \
         WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');\n\
         INSERT INTO counts SELECT auction, window_start, COUNT(*), MAX(price) \
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND)) \
         GROUP BY auction, window_start, window_end;"
    );
    nexmark_script(dir, out, &script, &["bid"], rate_limit)
}

#[test]
fn a_window_aggregate_gives_the_same_rows_through_failures_and_a_rescale() {
    let dir = tempfile::tempdir().unwrap();
    same_rows_through_failures_and_a_rescale(dir.path(), 1000, |out, rate| {
        nexmark_windows(dir.path(), out, rate)
    });
}

#[test]
fn a_changed_query_says_which_state_it_keeps_and_drops_before_it_restores() {
    let dir = tempfile::tempdir().unwrap();
    let before = nexmark_windows(dir.path(), "before", Some(100_000));
    let stopped = run_args(
        dir.path(),
        &before,
        &[
            "--checkpoint-interval",
            "200ms",
            "--stop-with-savepoint-after",
            "1s",
        ],
    );
    assert_ok(&stopped);
    let savepoint = savepoint_of(&stopped);
    let same = run_args(dir.path(), &before, &["--explain", "--restore", &savepoint]);
    assert_ok(&same);
    let report = String::from_utf8_lossy(&same.stdout).to_string();
    assert!(report.contains("drops the state of: none"), "{report}");
    let kept = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("keeps the state of: "))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(kept.contains("window-aggregate-"), "{report}");

    let first = committed_lines(&dir.path().join("before"));
    // Another aggregate in the same window (into the same files): its state
    // is another operator's.
    let script = dir.path().join("changed.sql");
    fs::write(
        &script,
        "CREATE TABLE counts (auction BIGINT, window_start TIMESTAMP(3), bids BIGINT, low BIGINT) \
         WITH ('connector' = 'filesystem', 'path' = 'before', 'format' = 'json');\n\
         INSERT INTO counts SELECT auction, window_start, COUNT(*), MIN(price) \
         FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND)) \
         GROUP BY auction, window_start, window_end;",
    )
    .unwrap();
    let mut changed = before;
    changed[2] = script.to_string_lossy().into_owned();
    changed.extend(["--name".to_string(), "before".to_string()]);
    let explained = run_args(
        dir.path(),
        &changed,
        &["--explain", "--restore", &savepoint],
    );
    assert_ok(&explained);
    let report = String::from_utf8_lossy(&explained.stdout).to_string();
    let dropped = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("drops the state of: "))
        .unwrap_or_else(|| panic!("{report}"));
    assert!(dropped.contains("window-aggregate-"), "{report}");
    assert!(report.contains("refused unless"), "{report}");

    let refused = run_args(dir.path(), &changed, &["--restore", &savepoint]);
    assert!(!refused.status.success(), "a restore that drops state runs");
    assert!(
        stderr(&refused).contains(&format!(
            "has state for operators the job does not have ({dropped})"
        )),
        "{}",
        stderr(&refused)
    );
    assert!(
        !dir.path().join("changed").exists(),
        "the refused job wrote"
    );
    assert_ok(&run_args(
        dir.path(),
        &changed,
        &["--restore", &savepoint, "--allow-non-restored-state"],
    ));
    assert!(committed_lines(&dir.path().join("before")).len() > first.len());
}

#[test]
fn every_nexmark_query_in_sql_runs_over_the_builtin_tables() {
    let root = crate::support::manifest_dir().join("../examples/sql/nexmark");
    let mut files: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 9, "{files:?}");
    let dir = tempfile::tempdir().unwrap();
    for file in files {
        let mut args = vec![
            "sql".to_string(),
            "-f".to_string(),
            file.to_string_lossy().into_owned(),
        ];
        for table in ["person", "auction", "bid"] {
            args.extend(["--option".to_string(), format!("{table}.events.num=20000")]);
        }
        let out = run_in(
            dir.path(),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert!(out.status.success(), "{}: {}", file.display(), stderr(&out));
        // Every table the query reads gives all the events of its kind: of
        // 20,000, 400 persons, 1,200 auctions and 18,400 bids.
        let read: u64 = stderr(&out)
            .split(" records read")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut kinds = (1..8u32).map(|mask| {
            [400, 1_200, 18_400]
                .iter()
                .enumerate()
                .filter(|(i, _)| mask >> i & 1 == 1)
                .map(|(_, n)| n)
                .sum::<u64>()
        });
        assert!(
            kinds.any(|sum| sum == read),
            "{}: {read} read, not the events of some kinds: {}",
            file.display(),
            stderr(&out)
        );
    }
}

#[test]
fn avg_of_whole_numbers_is_a_whole_number_as_in_flink() {
    let average = |of: &str, column: &str| {
        golden(
            &format!("window_start TIMESTAMP(3), average {column}"),
            &format!(
                "SELECT window_start, AVG({of}) FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '30' SECOND)) \
                 GROUP BY window_start, window_end"
            ),
        )
    };
    // 730 bytes over 6 clicks: 121 in BIGINT (truncated), 121.67 in DOUBLE;
    // the BIGINT average stays 121 written into a DOUBLE column.
    assert_eq!(
        average("bytes", "BIGINT"),
        [r#"{"window_start":"2026-01-01T00:00:00","average":121}"#]
    );
    assert_eq!(
        average("bytes", "DOUBLE"),
        [r#"{"window_start":"2026-01-01T00:00:00","average":121.0}"#]
    );
    assert_eq!(
        average("CAST(bytes AS DOUBLE)", "DOUBLE"),
        [r#"{"window_start":"2026-01-01T00:00:00","average":121.66666666666667}"#]
    );
}
