//! Backpressure: a slow sink slows the source to its pace, and memory stays bounded.

use std::sync::atomic::Ordering;
use std::time::Duration;

use weir_runtime::api::JobBuilder;
use weir_runtime::data::Batch;
use weir_runtime::exec::runner::{LocalRunner, RunConfig};
use weir_runtime::operator::Operator;
use weir_runtime::operators::SequenceSource;

/// A sink that takes 2 ms per batch.
struct SlowSink;

impl Operator for SlowSink {
    type In = u64;
    type Out = ();
    fn process(&mut self, input: &mut Batch<u64>, _: &mut Batch<()>) -> weir_runtime::Result<()> {
        std::thread::sleep(Duration::from_millis(2));
        input.clear();
        Ok(())
    }
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

const CHILD: &str = "WEIR_BACKPRESSURE_CHILD";

/// Resident memory is a per-process figure, so the scenario runs in a child process
/// of this test binary, alone; the parent checks that it passed.
#[test]
fn a_slow_sink_holds_the_source_back_and_memory_stays_bounded() {
    if std::env::var_os(CHILD).is_some() {
        return slow_sink_scenario();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "backpressure::a_slow_sink_holds_the_source_back_and_memory_stays_bounded",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "{}",
        text.lines()
            .filter(|l| l.starts_with("backpressure:"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

fn slow_sink_scenario() {
    let job = JobBuilder::new("backpressure");
    job.source("numbers", |_| SequenceSource::new(0..1_500_000))
        .rebalance()
        .sink("slow", |_| SlowSink);
    let dir = tempfile::tempdir().unwrap();
    let config = RunConfig {
        checkpoint_dir: dir.path().display().to_string(),
        checkpoint_interval: Some(Duration::from_millis(200)),
        ..RunConfig::default()
    };
    let exec = config.exec.clone();
    let runner = LocalRunner::new(job.build().unwrap(), config).unwrap();
    let metrics = runner.metrics();
    let rss_before = resident_kib();
    let handle = std::thread::spawn(move || runner.run().map(|s| s.restarts));
    let mut max_in_flight = 0u64;
    let mut max_rss = rss_before;
    while !handle.is_finished() {
        let ops = metrics.operators();
        let read: u64 = ops
            .iter()
            .filter(|o| o.uid == "numbers")
            .map(|o| o.metrics.records_out.load(Ordering::Relaxed))
            .sum();
        let written: u64 = ops
            .iter()
            .filter(|o| o.uid == "slow")
            .map(|o| o.metrics.records_in.load(Ordering::Relaxed))
            .sum();
        max_in_flight = max_in_flight.max(read.saturating_sub(written));
        max_rss = max_rss.max(resident_kib());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(handle.join().unwrap().unwrap(), 0);
    // In flight at most: a full channel, one batch being sent, one in the sink, one buffered.
    let bound = ((exec.channel_capacity + 3) * exec.batch_size) as u64;
    eprintln!("backpressure: max in flight {max_in_flight} records (bound {bound}), resident {rss_before} -> {max_rss} KiB");
    assert!(
        max_in_flight <= bound,
        "{max_in_flight} records in flight, more than {bound}"
    );
    assert!(
        max_rss - rss_before < 64 * 1024,
        "resident memory grew by {} KiB",
        max_rss - rss_before
    );
}
