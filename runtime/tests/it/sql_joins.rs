//! SQL joins as a user runs them with `weir sql -f`: golden pairs over small
//! files, and a Nexmark join whose rows are the same through injected
//! failures and a rescale from a savepoint as without.

use std::fs;
use std::path::Path;

use crate::support::{
    assert_ok, committed_lines, restarts, run_args, run_in, sorted_lines, stderr,
    stop_with_savepoint,
};

/// Clicks of four users, one of them without a user.
pub const CLICKS: &str = r#"{"user_id": "ann", "url": "/a", "bytes": 100}
{"user_id": "bob", "url": "/b", "bytes": 250}
{"user_id": "ann", "url": "/c", "bytes": 50}
{"user_id": "ann", "url": "/a", "bytes": 300}
{"user_id": null, "url": "/x", "bytes": 5}
{"user_id": "cy", "url": "/d", "bytes": 10}
{"user_id": "bob", "url": "/b", "bytes": 20}
"#;

/// Users, one without an id and one without clicks.
pub const USERS: &str = r#"{"id": "ann", "country": "NO"}
{"id": "bob", "country": "PT"}
{"id": null, "country": "??"}
{"id": "dee", "country": "JP"}
"#;

/// Runs `query` into a table of `columns` over the clicks and users files;
/// returns the committed output lines, sorted.
fn joined(columns: &str, query: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("clicks.jsonl"), CLICKS).unwrap();
    fs::write(dir.path().join("users.jsonl"), USERS).unwrap();
    let script = format!(
        "CREATE TABLE clicks (user_id STRING, url STRING, bytes BIGINT)
           WITH ('connector' = 'filesystem', 'path' = 'clicks.jsonl', 'format' = 'json');
         CREATE TABLE users (id STRING, country STRING)
           WITH ('connector' = 'filesystem', 'path' = 'users.jsonl', 'format' = 'json');
         CREATE TABLE result ({columns}) WITH ('connector' = 'filesystem', 'path' = 'out', 'format' = 'json');
         INSERT INTO result {query};"
    );
    fs::write(dir.path().join("job.sql"), script).unwrap();
    let out = run_in(dir.path(), &["sql", "-f", "job.sql", "-p", "2"]);
    assert_ok(&out);
    committed_lines(&dir.path().join("out"))
}

#[test]
fn a_join_pairs_each_row_with_the_rows_of_its_key_and_null_keys_with_none() {
    let out = joined(
        "user_id STRING, country STRING, bytes BIGINT",
        "SELECT c.user_id, u.country, c.bytes FROM clicks AS c JOIN users AS u ON c.user_id = u.id",
    );
    assert_eq!(
        out,
        sorted_lines(&[
            r#"{"user_id":"ann","country":"NO","bytes":100}"#,
            r#"{"user_id":"ann","country":"NO","bytes":50}"#,
            r#"{"user_id":"ann","country":"NO","bytes":300}"#,
            r#"{"user_id":"bob","country":"PT","bytes":250}"#,
            r#"{"user_id":"bob","country":"PT","bytes":20}"#,
        ])
    );
}

#[test]
fn a_self_join_keeps_the_pairs_the_rest_of_its_condition_holds_for() {
    let out = joined(
        "user_id STRING, url STRING, larger STRING",
        "SELECT a.user_id, a.url, b.url FROM clicks a JOIN clicks b \
         ON a.user_id = b.user_id AND a.bytes < b.bytes",
    );
    assert_eq!(
        out,
        sorted_lines(&[
            r#"{"user_id":"ann","url":"/a","larger":"/a"}"#,
            r#"{"user_id":"ann","url":"/c","larger":"/a"}"#,
            r#"{"user_id":"ann","url":"/c","larger":"/a"}"#,
            r#"{"user_id":"bob","url":"/b","larger":"/b"}"#,
        ])
    );
}

/// Bids on auctions of category 10 (Nexmark q20, on weir's columns), from
/// the first 200,000 events of the generator, into `out`.
fn nexmark_join(dir: &Path, out: &str, extra: &str) -> String {
    let script = format!(
        "{extra}CREATE TABLE q20 (auction BIGINT, bidder BIGINT, price BIGINT, item STRING, seller BIGINT)
           WITH ('connector' = 'filesystem', 'path' = '{out}', 'format' = 'json');
         INSERT INTO q20 SELECT b.auction, b.bidder, b.price, a.item_name, a.seller
         FROM bid AS b INNER JOIN auction AS a ON b.auction = a.id WHERE a.category = 10;"
    );
    let path = dir.join(format!("{out}.sql"));
    fs::write(&path, script).unwrap();
    path.to_string_lossy().into_owned()
}

/// `weir sql` arguments bounding both tables, at `rate` events per second each.
fn bounded(file: &str, rate: &str) -> Vec<String> {
    let mut args: Vec<String> = ["sql", "-f", file, "--max-parallelism", "8"]
        .map(str::to_string)
        .to_vec();
    for table in ["bid", "auction"] {
        for option in [
            "events.num=200000".to_string(),
            format!("rate-limit={rate}"),
        ] {
            args.extend(["--option".to_string(), format!("{table}.{option}")]);
        }
    }
    args
}

/// Fails, saying how many rows differ, unless `got` is `expected`.
fn same_rows(got: &[String], expected: &[String]) {
    if got != expected {
        let missing = expected.iter().filter(|r| !got.contains(r)).count();
        panic!(
            "{} rows where a failure-free run has {} ({missing} of its rows missing)",
            got.len(),
            expected.len()
        );
    }
}

#[test]
fn a_nexmark_join_gives_the_same_rows_through_failures_and_a_rescale() {
    let dir = tempfile::tempdir().unwrap();
    let clean = nexmark_join(dir.path(), "clean", "");
    assert_ok(&run_args(dir.path(), &bounded(&clean, "10000000"), &[]));
    let expected = committed_lines(&dir.path().join("clean"));
    assert!(expected.len() > 1000, "{} rows", expected.len());

    let failing = nexmark_join(dir.path(), "failing", "");
    let out = run_args(
        dir.path(),
        &bounded(&failing, "100000"),
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
    same_rows(&committed_lines(&dir.path().join("failing")), &expected);

    let before = nexmark_join(dir.path(), "rescaled", "");
    let savepoint = stop_with_savepoint(dir.path(), &bounded(&before, "50000"), &[]);
    let first = committed_lines(&dir.path().join("rescaled"));
    assert!(
        first.len() < expected.len(),
        "the savepoint came after {} of {} rows",
        first.len(),
        expected.len()
    );
    assert_ok(&run_args(
        dir.path(),
        &bounded(&before, "10000000"),
        &["-p", "3", "--restore", &savepoint],
    ));
    same_rows(&committed_lines(&dir.path().join("rescaled")), &expected);
}

#[test]
fn a_state_ttl_forgets_rows_so_that_partners_arriving_later_no_longer_meet() {
    let dir = tempfile::tempdir().unwrap();
    let kept = nexmark_join(dir.path(), "kept", "");
    assert_ok(&run_args(dir.path(), &bounded(&kept, "100000"), &[]));
    let all = committed_lines(&dir.path().join("kept"));
    let forgetting = nexmark_join(
        dir.path(),
        "forgetting",
        "SET 'table.exec.state.ttl' = '1 ms';\n",
    );
    assert_ok(&run_args(dir.path(), &bounded(&forgetting, "100000"), &[]));
    let some = committed_lines(&dir.path().join("forgetting"));
    assert!(
        some.len() < all.len() / 2,
        "{} of {} pairs met within 1 ms of state TTL",
        some.len(),
        all.len()
    );
    let refused = nexmark_join(
        dir.path(),
        "refused",
        "SET 'table.exec.mini-batch.enabled' = 'true';\n",
    );
    let out = run_args(dir.path(), &bounded(&refused, "100000"), &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("SET 'table.exec.mini-batch.enabled': not a setting of a weir SQL job"),
        "{}",
        stderr(&out)
    );
}
