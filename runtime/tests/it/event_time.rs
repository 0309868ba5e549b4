//! Event time through the engine: watermarks made from the records, carried with
//! them through every exchange (in process and over TCP), the minimum over a
//! task's inputs, never ahead of a record, ended by [`Watermark::MAX`]; an idle
//! source holds no one back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir_runtime::api::{JobBuilder, JobGraph};
use weir_runtime::data::{Batch, Watermark};
use weir_runtime::exec::runner::LocalRunner;
use weir_runtime::operator::{Operator, Source, SourceStatus};
use weir_runtime::operators::{SequenceSource, WatermarkStrategy};
use weir_runtime::state::OperatorSnapshot;
use weir_runtime::Result;

use crate::data_plane::run_on_two_workers;
use crate::engine::{config, PacedSource};

/// What a probe subtask saw: each watermark and when, and the records that came
/// at or behind the watermark before them (late).
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub watermarks: Vec<(Instant, Watermark)>,
    pub late: Vec<u64>,
    pub records: usize,
}

/// Records the watermarks that reach it and checks every record against them.
pub(crate) struct Probe {
    pub seen: Arc<Mutex<Seen>>,
    pub current: Watermark,
}

impl Operator for Probe {
    type In = u64;
    type Out = ();
    fn process(&mut self, input: &mut Batch<u64>, _: &mut Batch<()>) -> Result<()> {
        let mut seen = self.seen.lock().unwrap();
        seen.records += input.len();
        for r in input.drain(..) {
            if i64::try_from(r).unwrap() <= self.current.0 {
                seen.late.push(r);
            }
        }
        Ok(())
    }
    fn on_watermark(&mut self, watermark: Watermark, _: &mut Batch<()>) -> Result<()> {
        assert!(watermark > self.current, "watermarks only grow");
        self.current = watermark;
        self.seen
            .lock()
            .unwrap()
            .watermarks
            .push((Instant::now(), watermark));
        Ok(())
    }
}

/// Numbers 0..n as their own event times (ms), from two source subtasks, with
/// watermarks trailing by nothing, rebalanced to `probes` probe subtasks.
fn numbered(n: u64, probes: usize) -> (JobGraph, Vec<Arc<Mutex<Seen>>>) {
    let seen: Vec<Arc<Mutex<Seen>>> = (0..probes).map(|_| Arc::default()).collect();
    let mut job = JobBuilder::new("event-time");
    job.parallelism(2);
    let sinks = seen.clone();
    job.source("numbers", move |_| {
        PacedSource::new(SequenceSource::new(0..n), Duration::from_millis(1))
    })
    .assign_watermarks(
        "event-time",
        WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |n: &u64| *n as i64)
            .with_interval(Duration::ZERO),
    )
    .rebalance()
    .sink("probe", move |ctx| Probe {
        seen: sinks[ctx.subtask.index as usize].clone(),
        current: Watermark::MIN,
    })
    .parallelism(probes as u32);
    (job.build().unwrap(), seen)
}

fn check_numbered(seen: &[Arc<Mutex<Seen>>], n: u64) {
    let mut records = 0;
    for s in seen {
        let s = s.lock().unwrap();
        records += s.records;
        assert!(
            s.late.is_empty(),
            "records behind a watermark: {:?}",
            &s.late[..s.late.len().min(5)]
        );
        let marks: Vec<Watermark> = s.watermarks.iter().map(|(_, w)| *w).collect();
        assert!(
            marks.len() > 2,
            "watermarks flowed during the run: {marks:?}"
        );
        assert_eq!(
            marks.last(),
            Some(&Watermark::MAX),
            "the input ends event time"
        );
        assert!(marks.iter().any(|w| w.0 > 0 && w.0 < n as i64), "{marks:?}");
    }
    assert!(records as u64 >= n, "every record reached a probe");
}

#[test]
fn watermarks_follow_the_records_through_an_exchange_and_end_at_max() {
    let dir = tempfile::tempdir().unwrap();
    let (graph, seen) = numbered(4_000, 3);
    let mut cfg = config(dir.path());
    cfg.exec.batch_size = 16;
    LocalRunner::new(graph, cfg).unwrap().run().unwrap();
    check_numbered(&seen, 4_000);
}

#[test]
fn watermarks_cross_the_data_plane_between_workers() {
    let dir = tempfile::tempdir().unwrap();
    let (graph, seen) = numbered(4_000, 2);
    run_on_two_workers(graph, dir.path(), 0, 16);
    check_numbered(&seen, 4_000);
}

/// Emits a few records, then nothing (without ending) until `quiet` passed.
struct GoesQuiet {
    sent: bool,
    until: Option<Instant>,
    quiet: Duration,
    ended: Arc<Mutex<Option<Instant>>>,
}

impl Source for GoesQuiet {
    type Out = u64;
    fn poll(&mut self, output: &mut Batch<u64>, _: usize) -> Result<SourceStatus> {
        if !self.sent {
            self.sent = true;
            output.extend([1, 2, 3]);
            self.until = Some(Instant::now() + self.quiet);
            return Ok(SourceStatus::Ready);
        }
        match self.until {
            Some(t) if Instant::now() < t => Ok(SourceStatus::Idle(t)),
            _ => {
                *self.ended.lock().unwrap() = Some(Instant::now());
                Ok(SourceStatus::Finished)
            }
        }
    }
    fn snapshot(&mut self, _: &weir_runtime::data::Barrier) -> Result<OperatorSnapshot> {
        Ok(OperatorSnapshot::default())
    }
}

#[test]
fn an_idle_source_does_not_hold_back_the_event_time_of_a_union() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let ended = Arc::new(Mutex::new(None));
    let job = JobBuilder::new("idle");
    let strategy = || {
        WatermarkStrategy::bounded_out_of_orderness(Duration::ZERO, |n: &u64| *n as i64)
            .with_interval(Duration::ZERO)
            .with_idleness(Duration::from_millis(100))
    };
    let quiet_ended = ended.clone();
    let quiet = job
        .source("quiet", move |_| GoesQuiet {
            sent: false,
            until: None,
            quiet: Duration::from_secs(3),
            ended: quiet_ended.clone(),
        })
        .assign_watermarks("quiet-time", strategy());
    let busy = job
        .source("busy", |_| {
            PacedSource::new(SequenceSource::new(1_000..3_000), Duration::from_millis(1))
        })
        .assign_watermarks("busy-time", strategy());
    let probe = seen.clone();
    quiet.union(busy).rebalance().sink("probe", move |_| Probe {
        seen: probe.clone(),
        current: Watermark::MIN,
    });
    let mut cfg = config(dir.path());
    cfg.exec.batch_size = 16;
    LocalRunner::new(job.build().unwrap(), cfg)
        .unwrap()
        .run()
        .unwrap();
    let quiet_ended = ended.lock().unwrap().expect("the quiet source ended");
    let seen = seen.lock().unwrap();
    let before_end: Vec<Watermark> = seen
        .watermarks
        .iter()
        .filter(|(t, _)| *t < quiet_ended)
        .map(|(_, w)| *w)
        .collect();
    assert!(
        before_end.iter().any(|w| w.0 >= 1_000),
        "event time moved with the busy source while the quiet one idled: {before_end:?}"
    );
}
