//! The `weir` process runs without transparent huge pages (see the binary's
//! `without_transparent_huge_pages`) unless `MIMALLOC_ALLOW_THP` asks for
//! them: the kernel says which in `/proc/<pid>/status`.

use std::fs;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::support::weir;

/// `THP_enabled` of a running `weir sql` job, with `MIMALLOC_ALLOW_THP` set
/// to `allow` if given.
fn thp_enabled(allow: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("job.sql"),
        "CREATE TABLE out (auction BIGINT) WITH ('connector' = 'blackhole');
         INSERT INTO out SELECT auction FROM bid;",
    )
    .unwrap();
    let mut command = weir();
    command.current_dir(dir.path()).args([
        "sql",
        "-f",
        "job.sql",
        "--option",
        "bid.rate-limit=100",
    ]);
    command.env_remove("MIMALLOC_ALLOW_THP");
    if let Some(allow) = allow {
        command.env("MIMALLOC_ALLOW_THP", allow);
    }
    let mut child = command.spawn().unwrap();
    let status = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    let enabled = loop {
        sleep(Duration::from_millis(300));
        let text = fs::read_to_string(&status).unwrap_or_default();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        // Its task threads running: `main` has long set the flag.
        let threads: u32 = field("Threads:").and_then(|t| t.parse().ok()).unwrap_or(0);
        if let Some(value) = field("THP_enabled:").filter(|_| threads > 2) {
            break value;
        }
        assert!(Instant::now() < deadline, "weir never started: {text}");
    };
    child.kill().unwrap();
    child.wait().unwrap();
    enabled
}

#[test]
fn weir_runs_without_transparent_huge_pages_unless_asked() {
    if !fs::read_to_string("/proc/self/status").is_ok_and(|s| s.contains("THP_enabled:")) {
        panic!("this kernel does not report THP_enabled in /proc/<pid>/status (Linux 6.x does)");
    }
    assert_eq!(thp_enabled(None), "0");
    assert_eq!(thp_enabled(Some("1")), "1");
}
