//! SQL outer joins as a user runs them with `weir sql -f`: a preserved
//! side's row without a partner goes out padded with NULLs, and is deleted
//! when its first partner arrives; the changelog, folded, leaves exactly the
//! rows of the outer join of the two files, and never deletes a row it did
//! not insert.

use std::fs;

use crate::sql_joins::{CLICKS, USERS};
use crate::support::{assert_ok, run_in, sorted_lines};

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
