//! The job control API behind a token: `weir coordinator --api-token` refuses
//! every call without it, and `weir status` / `cancel` send it from
//! `--api-token` or `WEIR_API_TOKEN`.

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::{coordinator_with, free_port, wait};
use crate::support::{stderr, weir};

/// `weir ARGS --coordinator ADDRESS`, with `WEIR_API_TOKEN` set to `env`.
fn call(args: &[&str], address: &str, env: Option<&str>) -> Output {
    let mut cmd = weir();
    cmd.args(args).args(["--coordinator", address]);
    match env {
        Some(token) => cmd.env("WEIR_API_TOKEN", token),
        None => cmd.env_remove("WEIR_API_TOKEN"),
    };
    cmd.output().unwrap()
}

#[test]
fn a_coordinator_with_an_api_token_answers_only_calls_that_carry_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut coordinator =
        coordinator_with(dir.path(), port, "100000000", &["--api-token", "s3cret"])
            .env_remove("WEIR_API_TOKEN")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let address = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&address).is_err() {
        assert!(Instant::now() < deadline, "the coordinator never listened");
        std::thread::sleep(Duration::from_millis(20));
    }

    let missing = call(&["status"], &address, None);
    assert!(!missing.status.success());
    let why = stderr(&missing);
    assert!(
        why.contains("needs an API token") && why.contains("WEIR_API_TOKEN"),
        "{why}"
    );
    let wrong = call(&["status", "--api-token", "s3cres"], &address, None);
    assert!(
        stderr(&wrong).contains("wrong API token"),
        "{}",
        stderr(&wrong)
    );
    let refused = call(&["cancel"], &address, Some("not-it"));
    assert!(!refused.status.success(), "a cancel without the token");
    assert!(coordinator.try_wait().unwrap().is_none(), "the job goes on");

    let from_env = call(&["status"], &address, Some("s3cret"));
    assert!(from_env.status.success(), "{}", stderr(&from_env));
    assert!(
        String::from_utf8_lossy(&from_env.stdout).contains("job keyed-sum: "),
        "{}",
        String::from_utf8_lossy(&from_env.stdout)
    );
    let cancel = call(&["cancel", "--api-token", "s3cret"], &address, None);
    assert!(cancel.status.success(), "{}", stderr(&cancel));
    wait(&mut coordinator, Duration::from_secs(30));
}
