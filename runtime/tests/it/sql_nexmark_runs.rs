//! Shared steps of the SQL exactly-once tests over the built-in Nexmark
//! tables: a script's `weir sql` arguments over 20 s of bids, and the check
//! that a run through injected failures and a run rescaled from a savepoint
//! commit exactly the rows of a failure-free run.

use std::fs;
use std::path::Path;

use crate::support::{assert_ok, committed_lines, restarts, run_args, stderr, stop_with_savepoint};

/// Writes `script` to `dir/{name}.sql`; `weir sql` arguments running it over
/// the first 200,000 events of each of `tables` (10,000 a second of event
/// time: 20 s), at `rate_limit` events per second if given.
pub fn nexmark_script(
    dir: &Path,
    name: &str,
    script: &str,
    tables: &[&str],
    rate_limit: Option<u32>,
) -> Vec<String> {
    let path = dir.join(format!("{name}.sql"));
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
    for table in tables {
        let mut options = vec![
            "events.num=200000".to_string(),
            "events.per-second=10000".to_string(),
        ];
        options.extend(rate_limit.map(|rate| format!("rate-limit={rate}")));
        for option in options {
            args.extend(["--option".to_string(), format!("{table}.{option}")]);
        }
    }
    args
}

/// Runs `job(out, rate_limit)` (the arguments of a job writing into `out`)
/// failure-free, then at parallelism 2 through 3 injected failures, then
/// stopped with a savepoint and restored at parallelism 3; asserts the last
/// two commit exactly the first's rows, more than `at_least` of them. The
/// failure-free rows.
pub fn same_rows_through_failures_and_a_rescale(
    dir: &Path,
    at_least: usize,
    job: impl Fn(&str, Option<u32>) -> Vec<String>,
) -> Vec<String> {
    assert_ok(&run_args(dir, &job("clean", None), &[]));
    let expected = committed_lines(&dir.join("clean"));
    assert!(expected.len() > at_least, "{} rows", expected.len());

    let out = run_args(
        dir,
        &job("failing", Some(100_000)),
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
    assert_eq!(committed_lines(&dir.join("failing")), expected);

    let before = job("rescaled", Some(100_000));
    let savepoint = stop_with_savepoint(dir, &before, &["--name", "rescaled"]);
    let first = committed_lines(&dir.join("rescaled"));
    assert!(
        !first.is_empty() && first.len() < expected.len(),
        "the savepoint came after {} of {} rows",
        first.len(),
        expected.len()
    );
    // The restored sink commits the savepoint's pending file where it was.
    assert_ok(&run_args(
        dir,
        &job("rescaled", None),
        &["-p", "3", "--restore", &savepoint, "--name", "rescaled"],
    ));
    assert_eq!(committed_lines(&dir.join("rescaled")), expected);
    expected
}
