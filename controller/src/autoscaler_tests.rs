//! Table tests of the autoscaler's decision.

use super::*;

fn settings() -> AutoscalerSettings {
    AutoscalerSettings {
        min: 1,
        max: 4,
        target: 0.7,
        metrics_window: Duration::from_secs(30),
        stabilization_window: Duration::from_secs(60),
        cooldown: Duration::from_secs(20),
        catch_up: Duration::from_secs(100),
    }
}

fn chain(name: &str, source: bool, busy: f64, rate: f64) -> ChainLoad {
    ChainLoad {
        name: name.into(),
        parallelism: 1,
        source,
        busy,
        backpressured: 0.0,
        records_per_second: rate,
        backlog: None,
        backlog_per_second: 0.0,
    }
}

fn load(chains: Vec<ChainLoad>) -> JobLoad {
    JobLoad {
        covered: Duration::from_secs(30),
        chains,
    }
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

#[test]
fn the_busiest_chain_sets_the_parallelism_within_the_bounds() {
    let s = settings();
    let busy = load(vec![
        chain("gen", true, 0.1, 1000.0),
        chain("sum", false, 0.95, 1000.0),
    ]);
    // 1 × 0.95 ÷ 0.7 = 1.36: two subtasks.
    assert_eq!(recommend(&s, 1, &busy).parallelism, 2);
    // At 3, 3 × 0.95 ÷ 0.7 = 4.07: capped at the maximum 4.
    assert_eq!(recommend(&s, 3, &busy).parallelism, 4);
    let idle = load(vec![
        chain("gen", true, 0.05, 10.0),
        chain("sum", false, 0.1, 10.0),
    ]);
    assert_eq!(recommend(&s, 3, &idle).parallelism, 1);
    let message = recommend(&s, 1, &busy).message;
    assert!(message.contains("busiest sum: 95% busy"), "{message}");
}

#[test]
fn a_growing_backlog_asks_for_more_than_the_busy_time_alone() {
    let s = settings();
    let mut source = chain("gen", true, 0.2, 1000.0);
    source.backlog = Some(20_000.0);
    source.backlog_per_second = 500.0;
    let mut sum = chain("sum", false, 0.6, 1000.0);
    sum.backpressured = 0.0;
    // Demand: 1000 read + 500 growth + 20000 / 100 s = 1700/s, 1.7 × what is
    // read; the sum needs 2 × 0.6 × 1.7 ÷ 0.7 = 2.9: three.
    let verdict = recommend(&s, 2, &load(vec![source.clone(), sum.clone()]));
    assert_eq!(verdict.parallelism, 3);
    assert!(
        verdict.message.contains("backlog 20000 records (+500/s)"),
        "{}",
        verdict.message
    );
    // Without the backlog, 0.6 busy at 2 stays at 2.
    source.backlog = None;
    source.backlog_per_second = 0.0;
    assert_eq!(recommend(&s, 2, &load(vec![source, sum])).parallelism, 2);
}

#[test]
fn nothing_is_decided_in_the_cooldown_or_before_the_window_is_covered() {
    let s = settings();
    let busy = load(vec![chain("sum", false, 1.0, 1000.0)]);
    let mut status = AutoscalerStatus::default();
    assert_eq!(
        evaluate(&s, &mut status, 1, &busy, Some(at(0)), at(10)),
        None
    );
    assert!(status
        .last_evaluation
        .unwrap()
        .message
        .contains("cooling down"));
    let mut short = busy.clone();
    short.covered = Duration::from_secs(10);
    let mut status = AutoscalerStatus::default();
    assert_eq!(
        evaluate(&s, &mut status, 1, &short, Some(at(0)), at(30)),
        None
    );
    assert!(status
        .last_evaluation
        .unwrap()
        .message
        .contains("10 s of the 30 s"));
}

#[test]
fn a_scale_up_is_at_once_and_recorded_with_its_reason() {
    let s = settings();
    let busy = load(vec![chain("sum", false, 1.0, 1000.0)]);
    let mut status = AutoscalerStatus {
        parallelism: 1,
        spec_parallelism: 1,
        ..Default::default()
    };
    let rescale = evaluate(&s, &mut status, 1, &busy, Some(at(0)), at(30)).unwrap();
    assert_eq!((rescale.from, rescale.to), (1, 2));
    assert_eq!(status.parallelism, 2);
    assert_eq!(status.decisions.len(), 1);
    assert!(status.decisions[0].reason.contains("100% busy"));
    assert!(
        status.recommendations.is_empty(),
        "a new deployment starts afresh"
    );
}

#[test]
fn a_scale_down_waits_for_the_whole_window_and_takes_its_most() {
    let s = settings();
    let quiet = load(vec![chain("sum", false, 0.1, 10.0)]);
    let middling = load(vec![chain("sum", false, 0.4, 10.0)]);
    let mut status = AutoscalerStatus {
        parallelism: 4,
        spec_parallelism: 1,
        ..Default::default()
    };
    // 4 × 0.1 ÷ 0.7 = 0.57: one; 4 × 0.4 ÷ 0.7 = 2.3: three.
    assert_eq!(evaluate(&s, &mut status, 4, &quiet, None, at(0)), None);
    assert_eq!(evaluate(&s, &mut status, 4, &middling, None, at(20)), None);
    assert_eq!(evaluate(&s, &mut status, 4, &quiet, None, at(40)), None);
    assert_eq!(status.recommendations.len(), 3);
    // At 60 s the window is covered; the most it asked for was three.
    let rescale = evaluate(&s, &mut status, 4, &quiet, None, at(60)).unwrap();
    assert_eq!(rescale.to, 3);
    // A load that asks for the current parallelism within the window keeps it.
    let mut status = AutoscalerStatus {
        parallelism: 2,
        spec_parallelism: 1,
        ..Default::default()
    };
    let steady = load(vec![chain("sum", false, 0.5, 10.0)]);
    assert_eq!(evaluate(&s, &mut status, 2, &quiet, None, at(0)), None);
    assert_eq!(evaluate(&s, &mut status, 2, &steady, None, at(30)), None);
    assert_eq!(evaluate(&s, &mut status, 2, &quiet, None, at(70)), None);
    assert_eq!(evaluate(&s, &mut status, 2, &quiet, None, at(80)), None);
    // The steady point ended at 70 s; from 130 s the window holds only quiet ones.
    assert_eq!(
        evaluate(&s, &mut status, 2, &quiet, None, at(130)).map(|r| r.to),
        Some(1)
    );
}

#[test]
fn the_decisions_kept_are_the_last_ten() {
    let s = settings();
    let busy = load(vec![chain("sum", false, 1.0, 1000.0)]);
    let mut status = AutoscalerStatus::default();
    for i in 0..12 {
        evaluate(&s, &mut status, 1, &busy, None, at(i * 100));
    }
    assert_eq!(status.decisions.len(), DECISIONS_KEPT);
    assert_eq!(status.decisions[9].time, at(1100).to_string());
}
