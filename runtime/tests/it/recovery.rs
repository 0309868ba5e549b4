//! Restart paths of the engine through its Rust API: where a run restarts from,
//! what a damaged checkpoint costs, the final commit, and checkpoints that keep
//! failing.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use weir_runtime::api::JobBuilder;
use weir_runtime::data::{Barrier, Batch};
use weir_runtime::exec::runner::{LocalRunner, RestoreFrom, RunConfig};
use weir_runtime::ids::{CheckpointId, JobId};
use weir_runtime::operator::Operator;
use weir_runtime::operators::{FileSink, LineFormat, SequenceSource};
use weir_runtime::state::OperatorSnapshot;
use weir_runtime::{Error, Result};

use crate::engine::{config, run_paced, PacedSource};
use crate::support::{committed_lines, completed_checkpoints, hidden_files};

/// Passes records on.
struct PassThrough;

impl Operator for PassThrough {
    type In = u64;
    type Out = u64;
    fn process(&mut self, input: &mut Batch<u64>, output: &mut Batch<u64>) -> Result<()> {
        output.append(input);
        Ok(())
    }
}

/// Fails on the first batch of the whole run, before passing anything on.
struct FailsFirstBatch(Arc<AtomicBool>);

impl Operator for FailsFirstBatch {
    type In = u64;
    type Out = u64;
    fn process(&mut self, input: &mut Batch<u64>, output: &mut Batch<u64>) -> Result<()> {
        if !self.0.swap(true, Ordering::SeqCst) {
            return Err(Error::Internal(
                "failing before the first checkpoint".into(),
            ));
        }
        output.append(input);
        Ok(())
    }
}

fn is_contiguous_up_to(seen: &[u64], last: u64) -> bool {
    seen.last() == Some(&last) && seen.windows(2).all(|w| w[1] == w[0] + 1)
}

#[test]
fn a_restart_before_the_first_checkpoint_returns_to_the_point_the_run_started_from() {
    let dir = tempfile::tempdir().unwrap();
    // Deployment `a` runs to its end, checkpointing often.
    let mut cfg = config(dir.path());
    cfg.job_id = Some(JobId("a".into()));
    run_paced("paced", 400, cfg, |_| PassThrough).unwrap();
    let older = completed_checkpoints(&dir.path().join("paced"))
        .first()
        .cloned()
        .expect("retained checkpoints of a");
    // A new run starts from the oldest retained one and fails before it checkpoints.
    let mut cfg = config(dir.path());
    cfg.restore = RestoreFrom::Path(older.display().to_string());
    cfg.checkpoint_interval = None;
    let failed = Arc::new(AtomicBool::new(false));
    let (summary, seen) =
        run_paced("paced", 400, cfg, move |_| FailsFirstBatch(failed.clone())).unwrap();
    assert_eq!(summary.restarts, 1);
    // The restart returns to that point, not to `a`'s newer (final) checkpoint,
    // after which nothing is left to read.
    assert!(
        !seen.is_empty() && is_contiguous_up_to(&seen, 399),
        "the records after the restored point, each at least once: {} seen",
        seen.len()
    );
}

/// Fails the first time a checkpoint completes after the input ended (the final
/// commit), before the operators after it commit.
struct BreaksTheFinalCommit {
    ended: bool,
    broke: Arc<AtomicBool>,
}

impl Operator for BreaksTheFinalCommit {
    type In = u64;
    type Out = u64;
    fn process(&mut self, input: &mut Batch<u64>, output: &mut Batch<u64>) -> Result<()> {
        output.append(input);
        Ok(())
    }
    fn end_of_input(&mut self, _: &mut Batch<u64>) -> Result<()> {
        self.ended = true;
        Ok(())
    }
    fn checkpoint_complete(&mut self, _: CheckpointId) -> Result<()> {
        if self.ended && !self.broke.swap(true, Ordering::SeqCst) {
            return Err(Error::Internal("lost before the final commit".into()));
        }
        Ok(())
    }
}

fn line(n: &u64, out: &mut Vec<u8>) {
    out.extend_from_slice(n.to_string().as_bytes());
}

#[test]
fn a_bounded_job_ends_only_once_its_final_checkpoint_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let broke = Arc::new(AtomicBool::new(false));
    let job = JobBuilder::new("final-commit");
    let sink_dir = out.clone();
    job.source("numbers", |_| SequenceSource::new(0..1_000))
        .transform("breaker", move |_| BreaksTheFinalCommit {
            ended: false,
            broke: broke.clone(),
        })
        .sink("out", move |_| {
            FileSink::new(sink_dir.clone(), line as LineFormat<u64>)
        });
    let runner = LocalRunner::new(job.build().unwrap(), config(dir.path())).unwrap();
    let summary = runner.run().unwrap();
    assert_eq!(
        summary.restarts, 1,
        "the lost commit is replayed by a restart"
    );
    let mut lines: Vec<u64> = committed_lines(&out)
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        (0..1_000).collect::<Vec<_>>(),
        "every record visible once"
    );
    assert!(hidden_files(&out).is_empty(), "{:?}", hidden_files(&out));
}

#[test]
fn failures_asked_of_a_job_that_ends_first_strike_before_its_final_commit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let job = JobBuilder::new("ends-first");
    let sink_dir = out.clone();
    job.source("numbers", |_| SequenceSource::new(0..1_000))
        .transform("pass", |_| PassThrough)
        .sink("out", move |_| {
            FileSink::new(sink_dir.clone(), line as LineFormat<u64>)
        });
    let mut cfg = config(dir.path());
    // No periodic checkpoint and a job done in milliseconds: no random moment
    // comes before the end, so each failure strikes after the final checkpoint.
    cfg.checkpoint_interval = None;
    cfg.inject_failures = 3;
    let summary = LocalRunner::new(job.build().unwrap(), cfg)
        .unwrap()
        .run()
        .unwrap();
    assert_eq!(summary.restarts, 3);
    let mut lines: Vec<u64> = committed_lines(&out)
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    lines.sort_unstable();
    assert_eq!(lines, (0..1_000).collect::<Vec<_>>(), "every record once");
    assert!(hidden_files(&out).is_empty(), "{:?}", hidden_files(&out));
}

/// Its snapshot outlasts the checkpoint timeout the first `left` times in the run.
struct SlowSnapshots(Arc<AtomicU32>);

impl Operator for SlowSnapshots {
    type In = u64;
    type Out = u64;
    fn process(&mut self, input: &mut Batch<u64>, output: &mut Batch<u64>) -> Result<()> {
        output.append(input);
        Ok(())
    }
    fn snapshot(&mut self, _: &Barrier) -> Result<OperatorSnapshot> {
        let take = |n: u32| n.checked_sub(1);
        if self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take)
            .is_ok()
        {
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(OperatorSnapshot::default())
    }
}

#[test]
fn checkpoints_failing_beyond_the_tolerated_number_fail_the_job_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.checkpoint_timeout = Duration::from_millis(100);
    cfg.tolerable_failed_checkpoints = 1;
    let slow = Arc::new(AtomicU32::new(3));
    let (summary, seen) =
        run_paced("slow", 600, cfg, move |_| SlowSnapshots(slow.clone())).unwrap();
    assert!(
        summary.restarts >= 1,
        "two declined checkpoints in a row fail the job over"
    );
    assert_eq!(seen, (0..600).collect::<Vec<_>>());
}

fn damage(metadata: &std::path::Path) {
    std::fs::write(metadata, b"{ not a checkpoint").unwrap();
}

/// Runs a paced job as deployment `ha` until `checkpoints` completed, then cancels it.
fn cancelled_after(dir: &std::path::Path, checkpoints: u64) {
    let mut cfg = RunConfig {
        job_id: Some(JobId("ha".into())),
        ..config(dir)
    };
    cfg.exec.batch_size = 2;
    let job = JobBuilder::new("ha");
    job.source("numbers", |_| {
        PacedSource::new(SequenceSource::new(0..100_000), Duration::from_millis(2))
    })
    .transform("flaky", |_| PassThrough)
    .sink("collect", |_| {
        weir_runtime::operators::CollectSink::new(crate::engine::collected())
    });
    let runner = LocalRunner::new(job.build().unwrap(), cfg).unwrap();
    let (handle, metrics) = (runner.handle(), runner.metrics());
    let running = std::thread::spawn(move || runner.run());
    while metrics.checkpoints_completed.load(Ordering::Relaxed) < checkpoints {
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.cancel();
    running.join().unwrap().unwrap();
}

#[test]
fn a_damaged_checkpoint_is_skipped_loudly_and_all_damaged_fails_the_job() {
    let dir = tempfile::tempdir().unwrap();
    cancelled_after(dir.path(), 4);
    let done = completed_checkpoints(&dir.path().join("ha"));
    assert!(done.len() >= 2, "{done:?}");
    damage(&done[done.len() - 1].join("_metadata"));
    let restored_from = &done[done.len() - 2];
    // The same deployment again (a restarted coordinator): it resumes its own
    // checkpoints, passing over the damaged newest one, and says so. It keeps
    // every checkpoint, so that the one it resumed from is still there however
    // many it completes (with 3 kept, a slow run pruned it).
    let mut cfg = RunConfig {
        job_id: Some(JobId("ha".into())),
        retained: 1000,
        ..config(dir.path())
    };
    cfg.exec.batch_size = 2;
    let graph = || {
        let job = JobBuilder::new("ha");
        job.source("numbers", |_| SequenceSource::new(0..100_000))
            .transform("flaky", |_| PassThrough)
            .sink("collect", |_| {
                weir_runtime::operators::CollectSink::new(crate::engine::collected())
            });
        job.build().unwrap()
    };
    let runner = LocalRunner::new(graph(), cfg.clone()).unwrap();
    let metrics = runner.metrics();
    runner.run().unwrap();
    assert_eq!(
        metrics.damaged_checkpoints_skipped.load(Ordering::Relaxed),
        1
    );
    let notice = metrics.current_notice().unwrap_or_default();
    assert!(
        notice.contains("skipped damaged checkpoint")
            && notice.contains("not valid checkpoint metadata"),
        "{notice}"
    );
    assert!(restored_from.exists());

    // Every checkpoint of the deployment damaged: the job fails, it never starts
    // from nothing.
    for chk in completed_checkpoints(&dir.path().join("ha")) {
        damage(&chk.join("_metadata"));
    }
    let err = LocalRunner::new(graph(), cfg)
        .unwrap()
        .run()
        .expect_err("nothing undamaged to resume")
        .to_string();
    assert!(
        err.contains("every retained checkpoint of deployment ha is damaged"),
        "{err}"
    );
}
