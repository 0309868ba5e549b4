//! SQL top-N and deduplication (`ROW_NUMBER() OVER (...) ... WHERE rn <= N`)
//! as a user runs them with `weir sql -f`: the changelog of each rank, as
//! Flink's, over a small file of clicks.

use std::fs;

use crate::support::{run_in, stderr};

/// Six clicks by three users, in order.
const CLICKS: &str = r#"{"user_id": "ann", "url": "/a", "bytes": 100, "ts": "2026-01-01 00:00:01"}
{"user_id": "bob", "url": "/b", "bytes": 250, "ts": "2026-01-01 00:00:04"}
{"user_id": "ann", "url": "/c", "bytes": 50, "ts": "2026-01-01 00:00:07"}
{"user_id": "ann", "url": "/a", "bytes": 300, "ts": "2026-01-01 00:00:12"}
{"user_id": "cy", "url": "/d", "bytes": 10, "ts": "2026-01-01 00:00:13"}
{"user_id": "bob", "url": "/b", "bytes": 20, "ts": "2026-01-01 00:00:25"}
"#;

/// Prints `query` into a table of `columns` over the clicks; the lines printed,
/// or the error when it does not run.
fn printed(columns: &str, query: &str) -> Result<String, String> {
    printed_over(CLICKS, columns, query)
}

/// [`printed`] over the clicks `clicks` (JSON lines).
fn printed_over(clicks: &str, columns: &str, query: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clicks.jsonl"), clicks).unwrap();
    let script = format!(
        "CREATE TABLE clicks (user_id STRING, url STRING, bytes BIGINT, ts TIMESTAMP(3))
           WITH ('connector' = 'filesystem', 'path' = 'clicks.jsonl', 'format' = 'json');
         CREATE TABLE shown ({columns}) WITH ('connector' = 'print');
         INSERT INTO shown {query};"
    );
    fs::write(dir.path().join("job.sql"), script).unwrap();
    let out = run_in(dir.path(), &["sql", "-f", "job.sql"]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(stderr(&out))
    }
}

#[test]
fn a_top_n_emits_the_changes_of_each_rank() {
    let out = printed(
        "user_id STRING, url STRING, bytes BIGINT, rn BIGINT",
        "SELECT user_id, url, bytes, rn FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY bytes DESC) AS rn FROM clicks)
         WHERE rn <= 2",
    );
    assert_eq!(
        out.unwrap(),
        "+I[ann, /a, 100, 1]\n+I[bob, /b, 250, 1]\n+I[ann, /c, 50, 2]\n\
         -U[ann, /a, 100, 1]\n+U[ann, /a, 300, 1]\n-U[ann, /c, 50, 2]\n+U[ann, /a, 100, 2]\n\
         +I[cy, /d, 10, 1]\n+I[bob, /b, 20, 2]\n"
    );
}

#[test]
fn a_condition_beside_the_rank_bound_filters_the_changes_of_the_top_n() {
    let out = printed(
        "user_id STRING, url STRING, bytes BIGINT, rn BIGINT",
        "SELECT user_id, url, bytes, rn FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY bytes DESC) AS rn FROM clicks)
         WHERE rn <= 2 AND bytes >= 100",
    );
    // The changes above, but those of rows under 100 bytes.
    assert_eq!(
        out.unwrap(),
        "+I[ann, /a, 100, 1]\n+I[bob, /b, 250, 1]\n\
         -U[ann, /a, 100, 1]\n+U[ann, /a, 300, 1]\n+U[ann, /a, 100, 2]\n"
    );
}

#[test]
fn rn_equal_to_one_keeps_each_keys_first_row() {
    let out = printed(
        "user_id STRING, url STRING",
        "SELECT user_id, url FROM (
           SELECT user_id, url, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY ts ASC) AS row_num FROM clicks)
         WHERE row_num = 1",
    );
    assert_eq!(out.unwrap(), "+I[ann, /a]\n+I[bob, /b]\n+I[cy, /d]\n");
}

#[test]
fn over_windows_other_than_a_bounded_row_number_are_refused_by_name() {
    let unbounded = printed(
        "user_id STRING, rn BIGINT",
        "SELECT user_id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY bytes) FROM clicks",
    );
    assert!(
        unbounded.as_ref().unwrap_err().contains("WHERE rn <= N"),
        "{unbounded:?}"
    );
    let ranked = printed(
        "user_id STRING, r BIGINT",
        "SELECT user_id, r FROM (SELECT user_id, RANK() OVER (PARTITION BY user_id ORDER BY bytes) AS r FROM clicks) WHERE r <= 2",
    );
    assert!(
        ranked
            .as_ref()
            .unwrap_err()
            .contains("OVER windows with RANK are not supported yet"),
        "{ranked:?}"
    );
    let appended = printed(
        "user_id STRING, url STRING",
        "SELECT user_id, url FROM (SELECT user_id, url, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY bytes) AS rn FROM clicks) WHERE rn <= 1",
    );
    assert!(appended.is_ok(), "{appended:?}");
}

#[test]
fn rn_equal_to_one_over_a_time_descending_keeps_each_keys_last_row_even_on_ties() {
    // Every click falls in the same minute: the later one wins, as Flink's
    // deduplication keeping the last row.
    let out = printed(
        "user_id STRING, bytes BIGINT",
        "SELECT user_id, bytes FROM (
           SELECT user_id, bytes, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY DATE_TRUNC('minute', ts) DESC) AS rn
           FROM clicks)
         WHERE rn = 1",
    );
    assert_eq!(
        out.unwrap(),
        "+I[ann, 100]\n+I[bob, 250]\n-U[ann, 100]\n+U[ann, 50]\n-U[ann, 50]\n+U[ann, 300]\n\
         +I[cy, 10]\n-U[bob, 250]\n+U[bob, 20]\n"
    );
}

#[test]
fn a_top_n_over_many_rows_changes_each_rank_as_a_replay_of_its_rows_says() {
    // 70,000 clicks of 40 users with distinct sizes, in a scrambled order: the
    // top-N's store of rows fills with rows pushed out and is compacted.
    let (users, clicks) = (40u64, 70_000u64);
    let mut input = String::new();
    let mut rows: Vec<(String, String, u64)> = Vec::new();
    for i in 0..clicks {
        let (user, bytes) = (format!("u{}", i % users), (i * 7_919) % 100_003);
        let url = format!("/p{i}");
        input.push_str(&format!(
            r#"{{"user_id": "{user}", "url": "{url}", "bytes": {bytes}, "ts": "2026-01-01 00:00:01"}}"#
        ));
        input.push('\n');
        rows.push((user, url, bytes));
    }
    let out = printed_over(
        &input,
        "user_id STRING, url STRING, bytes BIGINT, rn BIGINT",
        "SELECT user_id, url, bytes, rn FROM (
           SELECT *, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY bytes DESC) AS rn FROM clicks)
         WHERE rn <= 3",
    )
    .unwrap();
    // Replays the changelog: every change fits the slot it changes, and every
    // row it names is an input row.
    let known: std::collections::HashSet<String> = rows
        .iter()
        .map(|(u, url, b)| format!("{u}, {url}, {b}"))
        .collect();
    let mut slots: std::collections::HashMap<(String, u64), String> = Default::default();
    for line in out.lines() {
        let (kind, body) = line.split_at(2);
        let body = &body[1..body.len() - 1];
        let (row, rank) = body.rsplit_once(", ").unwrap();
        let user = row.split(", ").next().unwrap().to_string();
        let slot = (user, rank.parse::<u64>().unwrap());
        assert!(known.contains(row), "{line}: not an input row");
        match kind {
            "+I" => assert!(slots.insert(slot, row.to_string()).is_none(), "{line}"),
            "-U" => assert_eq!(slots.remove(&slot).as_deref(), Some(row), "{line}"),
            "+U" => assert!(
                slots.insert(slot, row.to_string()).is_none(),
                "{line}: no -U before"
            ),
            other => panic!("{other}: {line}"),
        }
    }
    for u in 0..users {
        let user = format!("u{u}");
        let mut theirs: Vec<&(String, String, u64)> = rows.iter().filter(|r| r.0 == user).collect();
        theirs.sort_by_key(|r| std::cmp::Reverse(r.2));
        for (rank, (_, url, bytes)) in theirs.iter().take(3).enumerate() {
            let slot = (user.clone(), rank as u64 + 1);
            assert_eq!(
                slots.get(&slot),
                Some(&format!("{user}, {url}, {bytes}")),
                "{slot:?}"
            );
        }
    }
    assert_eq!(slots.len() as u64, 3 * users);
}
