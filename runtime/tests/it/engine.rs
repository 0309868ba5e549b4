//! The engine through its Rust API: operators, exchanges, windows, checkpoint
//! timeouts, restart limits and skipped incomplete checkpoints.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_runtime::api::{JobBuilder, JobGraph};
use weir_runtime::data::{Barrier, Batch};
use weir_runtime::exec::runner::{LocalRunner, RunConfig, RunSummary};
use weir_runtime::ids::{CheckpointId, JobId};
use weir_runtime::operator::{Operator, OperatorContext, Source, SourceStatus};
use weir_runtime::operators::{
    CollectSink, KeyedProcess, MapState, SequenceSource, WindowResult, Windows,
};
use weir_runtime::state::{OperatorSnapshot, RestoredState, Timers};
use weir_runtime::{Error, Result};

pub fn config(dir: &std::path::Path) -> RunConfig {
    RunConfig {
        checkpoint_dir: dir.display().to_string(),
        checkpoint_interval: Some(Duration::from_millis(50)),
        restart_backoff: Duration::from_millis(10),
        ..RunConfig::default()
    }
}

pub fn run(
    graph: JobGraph,
    config: RunConfig,
) -> Result<(RunSummary, Arc<weir_runtime::metrics::JobMetrics>)> {
    let runner = LocalRunner::new(graph, config)?;
    let metrics = runner.metrics();
    runner.run().map(|s| (s, metrics))
}

pub fn collected<T>() -> Arc<Mutex<Vec<T>>> {
    Arc::new(Mutex::new(Vec::new()))
}

/// Tags each record with the subtask that saw it.
struct Tag(u32);

impl Operator for Tag {
    type In = u64;
    type Out = (u32, u64);
    fn process(&mut self, input: &mut Batch<u64>, output: &mut Batch<(u32, u64)>) -> Result<()> {
        output.extend(input.drain(..).map(|r| (self.0, r)));
        Ok(())
    }
}

#[test]
fn map_filter_flat_map_and_keyed_sum_compose_across_subtasks() {
    let dir = tempfile::tempdir().unwrap();
    let out = collected();
    let sink = out.clone();
    let mut job = JobBuilder::new("compose");
    job.parallelism(2);
    job.source("numbers", |_| SequenceSource::new(0..10_000))
        .filter("even", |n: &u64| n.is_multiple_of(2))
        .map("half", |n: u64| n / 2)
        .flat_map("twice", |n: u64, out: &mut Vec<u64>| out.extend([n, n]))
        .key_by(|n: &u64| n % 10)
        .sum("sum", |n: &u64| *n as i64)
        .parallelism(3)
        .sink("collect", move |_| CollectSink::new(sink.clone()));
    run(job.build().unwrap(), config(dir.path())).unwrap();
    let mut finals: BTreeMap<u64, i64> = BTreeMap::new();
    for (k, s) in out.lock().unwrap().iter() {
        let e = finals.entry(*k).or_default();
        *e = (*e).max(*s);
    }
    for k in 0..10u64 {
        let expected: i64 = (0..5_000u64)
            .filter(|n| n % 10 == k)
            .map(|n| 2 * n as i64)
            .sum();
        assert_eq!(finals[&k], expected, "key {k}");
    }
}

#[test]
fn broadcast_reaches_every_subtask_and_rebalance_spreads_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (broadcast, rebalanced) = (collected(), collected());
    let (b, r) = (broadcast.clone(), rebalanced.clone());
    let job = JobBuilder::new("exchanges");
    job.source("a", |_| SequenceSource::new(0..5_000))
        .broadcast()
        .transform("tag-b", |ctx: &OperatorContext| Tag(ctx.subtask.index))
        .parallelism(3)
        .sink("out-b", move |_| CollectSink::new(b.clone()))
        .parallelism(3);
    job.source("b", |_| SequenceSource::new(0..50_000))
        .rebalance()
        .transform("tag-r", |ctx: &OperatorContext| Tag(ctx.subtask.index))
        .parallelism(2)
        .sink("out-r", move |_| CollectSink::new(r.clone()))
        .parallelism(2);
    run(job.build().unwrap(), config(dir.path())).unwrap();
    let b = broadcast.lock().unwrap();
    assert_eq!(b.len(), 15_000);
    for subtask in 0..3 {
        let mut seen: Vec<u64> = b.iter().filter(|r| r.0 == subtask).map(|r| r.1).collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..5_000).collect::<Vec<_>>(),
            "subtask {subtask} sees every record"
        );
    }
    let r = rebalanced.lock().unwrap();
    let mut all: Vec<u64> = r.iter().map(|x| x.1).collect();
    all.sort_unstable();
    assert_eq!(all, (0..50_000).collect::<Vec<_>>());
    assert!(
        r.iter().any(|x| x.0 == 0) && r.iter().any(|x| x.0 == 1),
        "both subtasks get batches"
    );
}

/// Counts distinct values per key with map state.
struct Distinct;

impl KeyedProcess for Distinct {
    type Key = u64;
    type In = (u64, u64);
    type Out = (u64, usize);
    type State = MapState<u64, ()>;
    fn process(
        &self,
        key: &u64,
        state: &mut MapState<u64, ()>,
        r: (u64, u64),
        _timers: &mut Timers<'_, u64>,
        out: &mut Vec<(u64, usize)>,
    ) -> Result<()> {
        if state.insert(r.1, ()).is_none() {
            out.push((*key, state.len()));
        }
        Ok(())
    }
}

#[test]
fn keyed_process_keeps_map_state_per_key_through_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let out = collected();
    let sink = out.clone();
    let mut job = JobBuilder::new("distinct");
    job.parallelism(2);
    job.source("pairs", |_| {
        PacedSource::new(SequenceSource::new(0..200_000), Duration::from_millis(5))
    })
    .map("pair", |n: u64| (n % 7, n % 100))
    .key_by(|r: &(u64, u64)| r.0)
    .process("distinct", Distinct)
    .sink("collect", move |_| CollectSink::new(sink.clone()));
    let mut cfg = config(dir.path());
    cfg.inject_failures = 2;
    cfg.seed = 5;
    let (summary, _) = run(job.build().unwrap(), cfg).unwrap();
    assert_eq!(summary.restarts, 2);
    // The collect sink is at least once, so replays may repeat lines; the final
    // distinct count per key is exact: the values n % 100 with n % 7 == k.
    let mut finals: BTreeMap<u64, usize> = BTreeMap::new();
    for (k, n) in out.lock().unwrap().iter() {
        let e = finals.entry(*k).or_default();
        *e = (*e).max(*n);
    }
    assert_eq!(finals.len(), 7);
    assert!(finals.values().all(|n| *n == 100), "{finals:?}");
}

#[test]
fn tumbling_and_sliding_windows_count_and_sum_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let (tumbling, sliding) = (collected(), collected());
    let (t, s) = (tumbling.clone(), sliding.clone());
    let job = JobBuilder::new("windows");
    job.source("n1", |_| {
        PacedSource::new(SequenceSource::new(0..30_000), Duration::from_millis(3))
    })
    .key_by(|n: &u64| n % 3)
    .window(Windows::tumbling_processing_time(Duration::from_millis(20)))
    .count("count")
    .sink("out-t", move |_| CollectSink::new(t.clone()));
    job.source("n2", |_| {
        PacedSource::new(SequenceSource::new(0..30_000), Duration::from_millis(3))
    })
    .key_by(|n: &u64| n % 3)
    .window(Windows::sliding_processing_time(
        Duration::from_millis(40),
        Duration::from_millis(20),
    ))
    .sum("sum", |n: &u64| *n as i64)
    .sink("out-s", move |_| CollectSink::new(s.clone()));
    run(job.build().unwrap(), config(dir.path())).unwrap();
    let t: Vec<WindowResult<u64, u64>> = tumbling.lock().unwrap().clone();
    assert!(t.len() > 3, "several windows fired: {}", t.len());
    assert!(t
        .iter()
        .all(|w| w.end_ms - w.start_ms == 20 && w.start_ms % 20 == 0));
    assert_eq!(
        t.iter().map(|w| w.value).sum::<u64>(),
        30_000,
        "every record counted once"
    );
    let s: Vec<WindowResult<u64, i64>> = sliding.lock().unwrap().clone();
    assert!(s
        .iter()
        .all(|w| w.end_ms - w.start_ms == 40 && w.start_ms % 20 == 0));
    let total: i64 = (0..30_000).sum();
    assert_eq!(
        s.iter().map(|w| w.value).sum::<i64>(),
        2 * total,
        "each record in two sliding windows"
    );
}

/// Wraps a source and sleeps between batches, to stretch a job over time.
pub struct PacedSource<S> {
    inner: S,
    pause: Duration,
}

impl<S> PacedSource<S> {
    pub fn new(inner: S, pause: Duration) -> Self {
        PacedSource { inner, pause }
    }
}

impl<S: Source> Source for PacedSource<S> {
    type Out = S::Out;
    fn open(&mut self, ctx: &OperatorContext, restored: Option<RestoredState>) -> Result<()> {
        self.inner.open(ctx, restored)
    }
    fn poll(&mut self, output: &mut Batch<S::Out>, max: usize) -> Result<SourceStatus> {
        let status = self.inner.poll(output, max)?;
        Ok(match status {
            SourceStatus::Ready => SourceStatus::Idle(Instant::now() + self.pause),
            other => other,
        })
    }
    fn snapshot(&mut self, barrier: &Barrier) -> Result<OperatorSnapshot> {
        self.inner.snapshot(barrier)
    }
    fn checkpoint_complete(&mut self, id: CheckpointId) -> Result<()> {
        self.inner.checkpoint_complete(id)
    }
}

/// Passes records on; its first snapshot takes longer than the checkpoint timeout.
struct StuckOnce {
    stuck: bool,
}

impl Operator for StuckOnce {
    type In = u64;
    type Out = u64;
    fn process(&mut self, input: &mut Batch<u64>, output: &mut Batch<u64>) -> Result<()> {
        output.append(input);
        Ok(())
    }
    fn snapshot(&mut self, _: &Barrier) -> Result<OperatorSnapshot> {
        if !self.stuck {
            self.stuck = true;
            std::thread::sleep(Duration::from_millis(400));
        }
        Ok(OperatorSnapshot::default())
    }
}

#[test]
fn a_stuck_checkpoint_is_declined_while_the_job_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let out = collected();
    let sink = out.clone();
    let job = JobBuilder::new("stuck");
    job.source("numbers", |_| {
        PacedSource::new(SequenceSource::new(0..150_000), Duration::from_millis(2))
    })
    .rebalance()
    .transform("stuck", |_| StuckOnce { stuck: false })
    .sink("collect", move |_| CollectSink::new(sink.clone()));
    let mut cfg = config(dir.path());
    cfg.checkpoint_timeout = Duration::from_millis(150);
    let (summary, metrics) = run(job.build().unwrap(), cfg).unwrap();
    assert_eq!(summary.restarts, 0);
    assert!(
        metrics.checkpoints_failed.load(Ordering::Relaxed) >= 1,
        "the stuck checkpoint is declined"
    );
    assert!(
        metrics.checkpoints_completed.load(Ordering::Relaxed) >= 2,
        "later checkpoints complete"
    );
    assert_eq!(out.lock().unwrap().len(), 150_000);
}

/// Fails on every batch.
struct AlwaysFails;

impl Operator for AlwaysFails {
    type In = u64;
    type Out = u64;
    fn process(&mut self, _: &mut Batch<u64>, _: &mut Batch<u64>) -> Result<()> {
        Err(Error::Internal("boom".into()))
    }
}

#[test]
fn the_restart_limit_ends_the_job_with_the_last_failure() {
    let dir = tempfile::tempdir().unwrap();
    let job = JobBuilder::new("fails");
    job.source("numbers", |_| SequenceSource::new(0..10))
        .transform("fail", |_| AlwaysFails)
        .sink("collect", |_| CollectSink::new(collected()));
    let mut cfg = config(dir.path());
    cfg.max_restarts = 2;
    let err = run(job.build().unwrap(), cfg)
        .expect_err("the job fails for good")
        .to_string();
    assert!(
        err.contains("restart limit 2") && err.contains("boom"),
        "{err}"
    );
}

/// Fails once per attempt, after a checkpoint of that attempt completed, `left` times in all.
struct FailsAfterEachCheckpoint {
    left: Arc<std::sync::atomic::AtomicU32>,
    checkpointed: bool,
}

impl Operator for FailsAfterEachCheckpoint {
    type In = u64;
    type Out = u64;
    fn process(&mut self, input: &mut Batch<u64>, output: &mut Batch<u64>) -> Result<()> {
        let take = |n: u32| n.checked_sub(1);
        if self.checkpointed
            && self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, take)
                .is_ok()
        {
            return Err(Error::Internal("failing after a checkpoint".into()));
        }
        output.append(input);
        Ok(())
    }
    fn checkpoint_complete(&mut self, _: CheckpointId) -> Result<()> {
        self.checkpointed = true;
        Ok(())
    }
}

#[test]
fn failures_with_checkpoints_between_them_never_exhaust_the_restart_limit() {
    let dir = tempfile::tempdir().unwrap();
    let fails = Arc::new(std::sync::atomic::AtomicU32::new(5));
    let mut cfg = config(dir.path());
    cfg.max_restarts = 2;
    let flaky = move |_: &OperatorContext| FailsAfterEachCheckpoint {
        left: fails.clone(),
        checkpointed: false,
    };
    let (summary, seen) = run_paced("keeps-going", 400, cfg, flaky).expect("the job finishes");
    assert_eq!(
        summary.restarts, 5,
        "five failures, each after a completed checkpoint"
    );
    assert_eq!(seen, (0..400).collect::<Vec<_>>());
}

/// Runs `records` numbers (one per 2 ms, in batches of two) through the operator
/// `make` builds into a collecting sink; returns the run's summary and the
/// distinct numbers the sink saw, sorted.
pub fn run_paced<O, F>(
    name: &str,
    records: u64,
    mut cfg: RunConfig,
    make: F,
) -> Result<(RunSummary, Vec<u64>)>
where
    O: Operator<In = u64, Out = u64>,
    F: Fn(&OperatorContext) -> O + Send + Sync + 'static,
{
    let out = collected();
    let sink = out.clone();
    let job = JobBuilder::new(name);
    job.source("numbers", move |_| {
        PacedSource::new(SequenceSource::new(0..records), Duration::from_millis(2))
    })
    .transform("flaky", make)
    .sink("collect", move |_| CollectSink::new(sink.clone()));
    cfg.exec.batch_size = 2;
    let (summary, _) = run(job.build()?, cfg)?;
    let mut seen: Vec<u64> = out.lock().unwrap().clone();
    seen.sort_unstable();
    seen.dedup();
    Ok((summary, seen))
}

/// Fails once after the first completed checkpoint, and at that moment makes the
/// job's checkpoint directory unreadable (a file in its place) for `outage`, as
/// an S3 outage makes storage unreachable.
struct FailsDuringAStorageOutage {
    checkpoints: std::path::PathBuf,
    outage: Duration,
    failed: Arc<std::sync::atomic::AtomicBool>,
    checkpointed: bool,
}

impl Operator for FailsDuringAStorageOutage {
    type In = u64;
    type Out = u64;
    fn process(&mut self, input: &mut Batch<u64>, output: &mut Batch<u64>) -> Result<()> {
        if self.checkpointed && !self.failed.swap(true, Ordering::SeqCst) {
            let away = self.checkpoints.with_extension("away");
            std::fs::rename(&self.checkpoints, &away).unwrap();
            std::fs::write(&self.checkpoints, b"not a directory").unwrap();
            let (dir, outage) = (self.checkpoints.clone(), self.outage);
            std::thread::spawn(move || {
                std::thread::sleep(outage);
                std::fs::remove_file(&dir).unwrap();
                std::fs::rename(&away, &dir).unwrap();
            });
            return Err(Error::Internal("failing while storage is down".into()));
        }
        output.append(input);
        Ok(())
    }
    fn checkpoint_complete(&mut self, _: CheckpointId) -> Result<()> {
        self.checkpointed = true;
        Ok(())
    }
}

#[test]
fn a_restart_waits_for_unreachable_checkpoint_storage() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("outage");
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flaky = move |_: &OperatorContext| FailsDuringAStorageOutage {
        checkpoints: checkpoints.clone(),
        outage: Duration::from_millis(600),
        failed: failed.clone(),
        checkpointed: false,
    };
    let (summary, seen) =
        run_paced("outage", 300, config(dir.path()), flaky).expect("the job outlives the outage");
    assert_eq!(summary.restarts, 1);
    assert_eq!(seen, (0..300).collect::<Vec<_>>());
}

fn skip_job() -> JobGraph {
    let job = JobBuilder::new("skip");
    job.source("numbers", |_| SequenceSource::new(0..1_000))
        .key_by(|n: &u64| n % 5)
        .sum("sum", |n: &u64| *n as i64)
        .sink("collect", |_| CollectSink::new(collected()));
    job.build().unwrap()
}

#[test]
fn an_incomplete_checkpoint_is_skipped_and_its_id_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.job_id = Some(JobId("one".into()));
    let (first, _) = run(skip_job(), cfg.clone()).unwrap();
    let abandoned = first.ending.final_checkpoint().unwrap().0 + 40;
    let junk = dir
        .path()
        .join(format!("skip/one/checkpoints/chk-{abandoned}/sum/0"));
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("state"), b"half written").unwrap();
    // The same deployment again (a restarted coordinator): it resumes its own
    // latest checkpoint, and never takes the id of what it left half written.
    let (second, _) = run(skip_job(), cfg).unwrap();
    let last = second.ending.final_checkpoint().unwrap();
    assert!(last.0 > abandoned, "ids keep growing: {last}");
}

#[test]
fn ids_of_checkpoints_that_left_nothing_behind_are_never_used_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.job_id = Some(JobId("one".into()));
    let (first, _) = run(skip_job(), cfg.clone()).unwrap();
    let used = first.ending.final_checkpoint().unwrap();
    // Declined checkpoints and savepoint staging directories are deleted: say
    // ids after the final one were used and their directories are gone.
    let listing = || {
        let mut ids: Vec<String> = std::fs::read_dir(dir.path().join("skip/one/checkpoints"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        ids
    };
    assert!(listing().contains(&format!("chk-{used}")));
    let (second, _) = run(skip_job(), cfg).unwrap();
    let next = second.ending.final_checkpoint().unwrap();
    assert!(
        next.0 > used.0 + 1,
        "a restarted deployment starts above every id it reserved, not at {next} (listing {:?})",
        listing()
    );
}
