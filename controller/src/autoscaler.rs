//! The autoscaler's decision, a pure function: from the job's load over the
//! metrics window to the parallelism it should run at, and when to change it.
//!
//! Each operator chain needs `parallelism × busy × demand ÷ target` subtasks,
//! where `busy` is the share of its subtasks' time spent working (neither
//! waiting for input nor blocked by a full output) and `demand` how much more
//! the sources should read than they do: their backlog's growth and the rate
//! that works it off within `catchUp`, over what they read now. The job gets
//! the most any chain needs, within the bounds. A scale-up happens at once; a
//! scale-down once the load has asked for less over the whole stabilization
//! window, to the most it asked for meanwhile. Nothing is decided during the
//! cooldown after a deployment or before the load covers the metrics window.

use std::time::Duration;

use jiff::Timestamp;

use crate::crd::{
    AutoscalerEvaluation, AutoscalerSettings, AutoscalerStatus, Recommendation, ScalingDecision,
};

/// Decisions kept in the status.
const DECISIONS_KEPT: usize = 10;

/// One operator chain's load over the metrics window.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainLoad {
    /// Its operators, upstream first.
    pub name: String,
    /// Its parallelism.
    pub parallelism: u32,
    /// Whether it starts with a source.
    pub source: bool,
    /// Share of its subtasks' time spent working (0 to 1).
    pub busy: f64,
    /// Share of its subtasks' time blocked on a full output (0 to 1).
    pub backpressured: f64,
    /// Records in per second (out, for a source chain).
    pub records_per_second: f64,
    /// Records its sources have not read yet at the end of the window (Kafka
    /// lag, a generator's backlog), if they say.
    pub backlog: Option<f64>,
    /// How fast that backlog grew over the window, records per second.
    pub backlog_per_second: f64,
}

/// The job's load, as its coordinator measured it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobLoad {
    /// How much of the window the measurements cover (they start with the
    /// running attempt).
    pub covered: Duration,
    /// Per operator chain.
    pub chains: Vec<ChainLoad>,
}

/// What the load asks for, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The parallelism, within the bounds.
    pub parallelism: u32,
    /// What was seen, for people.
    pub message: String,
}

/// The parallelism that `load`, measured at parallelism `current`, asks for.
pub fn recommend(settings: &AutoscalerSettings, current: u32, load: &JobLoad) -> Verdict {
    let sources: Vec<&ChainLoad> = load.chains.iter().filter(|c| c.source).collect();
    let read: f64 = sources.iter().map(|c| c.records_per_second).sum();
    let backlog: Option<f64> = sources
        .iter()
        .filter_map(|c| c.backlog)
        .reduce(|a, b| a + b);
    let growth: f64 = sources.iter().map(|c| c.backlog_per_second).sum();
    let catch_up = settings.catch_up.as_secs_f64().max(1.0);
    let demand = match backlog {
        Some(backlog) => {
            let wanted = (read + growth + backlog / catch_up).max(0.0);
            if read > 0.0 {
                wanted / read
            } else if wanted > 0.0 {
                // Nothing read yet a backlog waits: as much as allowed.
                f64::from(settings.max) / f64::from(current.max(1))
            } else {
                1.0
            }
        }
        None => 1.0,
    };
    let busiest = load.chains.iter().max_by(|a, b| a.busy.total_cmp(&b.busy));
    let needed = busiest.map_or(0.0, |c| {
        f64::from(current) * c.busy * demand / settings.target
    });
    let parallelism = ((needed - 1e-9).ceil().max(1.0) as u32).clamp(settings.min, settings.max);
    let mut message = match busiest {
        Some(c) => format!(
            "busiest {}: {:.0}% busy, {:.0}% backpressured at parallelism {current}; \
             sources read {:.0} records/s",
            c.name,
            c.busy * 100.0,
            c.backpressured * 100.0,
            read
        ),
        None => "no operator reported its load".to_string(),
    };
    if let Some(backlog) = backlog {
        message.push_str(&format!(", backlog {backlog:.0} records ({growth:+.0}/s)"));
    }
    message.push_str(&format!(
        "; at {:.0}% target utilization that needs {parallelism}",
        settings.target * 100.0
    ));
    Verdict {
        parallelism,
        message,
    }
}

/// A rescale decided by [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescale {
    /// From.
    pub from: u32,
    /// To.
    pub to: u32,
    /// Why.
    pub reason: String,
}

/// Looks at `load` of the job running at `current` since `deployed_at`, records
/// what it asks for in `status`, and decides a rescale when one is due (then
/// `status.parallelism` is the new parallelism).
pub fn evaluate(
    settings: &AutoscalerSettings,
    status: &mut AutoscalerStatus,
    current: u32,
    load: &JobLoad,
    deployed_at: Option<Timestamp>,
    now: Timestamp,
) -> Option<Rescale> {
    let since = |d: Duration| now - jiff::SignedDuration::try_from(d).unwrap_or_default();
    let waiting = |message: String| AutoscalerEvaluation {
        time: now.to_string(),
        message,
    };
    if deployed_at.is_some_and(|t| t > since(settings.cooldown)) {
        status.last_evaluation = Some(waiting(format!(
            "cooling down: no decision within {} s of a deployment",
            settings.cooldown.as_secs()
        )));
        return None;
    }
    if load.covered < settings.metrics_window {
        status.last_evaluation = Some(waiting(format!(
            "measuring: {} s of the {} s metrics window so far",
            load.covered.as_secs(),
            settings.metrics_window.as_secs()
        )));
        return None;
    }
    let verdict = recommend(settings, current, load);
    status.last_evaluation = Some(waiting(verdict.message.clone()));
    remember(
        status,
        verdict.parallelism,
        now,
        since(settings.stabilization_window),
    );
    let to = if verdict.parallelism > current {
        verdict.parallelism
    } else {
        // Down only once the whole window asked for less: to its most.
        let covered = status
            .recommendations
            .first()
            .and_then(|r| r.time.parse::<Timestamp>().ok())
            .is_some_and(|t| t <= since(settings.stabilization_window));
        let most = status.recommendations.iter().map(|r| r.parallelism).max();
        match most {
            Some(most) if covered && most < current => most,
            _ => return None,
        }
    };
    let reason = verdict.message;
    status.parallelism = to;
    status.recommendations.clear();
    status.decisions.push(ScalingDecision {
        time: now.to_string(),
        from: current,
        to,
        reason: reason.clone(),
    });
    let excess = status.decisions.len().saturating_sub(DECISIONS_KEPT);
    status.decisions.drain(..excess);
    Some(Rescale {
        from: current,
        to,
        reason,
    })
}

/// Adds a recommendation as a change point (the load asked for `parallelism`
/// from `now` on), dropping the points that ended before `window_start`.
fn remember(
    status: &mut AutoscalerStatus,
    parallelism: u32,
    now: Timestamp,
    window_start: Timestamp,
) {
    let recs = &mut status.recommendations;
    if recs.last().is_none_or(|r| r.parallelism != parallelism) {
        recs.push(Recommendation {
            time: now.to_string(),
            parallelism,
        });
    }
    // A point lasts until the next one starts.
    while recs.len() > 1
        && recs[1]
            .time
            .parse::<Timestamp>()
            .is_ok_and(|t| t <= window_start)
    {
        recs.remove(0);
    }
}

#[cfg(test)]
#[path = "autoscaler_tests.rs"]
mod tests;
