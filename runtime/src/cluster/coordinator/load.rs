//! The job's load, as `GetLoad` reports it to the autoscaler: each operator
//! chain's busy and backpressured time, records and source backlog, sampled
//! once a second from the workers' latest heartbeats and averaged over a
//! window that ends now and starts no earlier than the running attempt.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use weir_proto::v1;

use crate::api::{JobGraph, NodeKind};
use crate::cluster::coordinator::shared::Inner;

/// Samples kept: the longest window asked for can be this many seconds.
const SAMPLES_KEPT: usize = 3600;

/// What the coordinator knows of one chain from the plan.
#[derive(Debug, Clone)]
struct Chain {
    /// Its operators' uids, upstream first.
    uids: Vec<String>,
    parallelism: u32,
    source: bool,
}

/// One chain's totals at one moment, over its subtasks of one attempt.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    elapsed_ns: u64,
    idle_ns: u64,
    backpressured_ns: u64,
    /// Records into its first operator (out of it, for a source).
    records: u64,
    /// The backlog its sources report, if they do.
    backlog: Option<i64>,
}

#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    attempt: u64,
    chains: Vec<Totals>,
}

/// The samples of the job's load.
pub struct LoadHistory {
    chains: Vec<Chain>,
    samples: Mutex<VecDeque<Sample>>,
}

impl LoadHistory {
    /// The history of `graph`'s chains, empty.
    pub fn new(graph: &JobGraph) -> Self {
        let chains = crate::exec::deploy::chains(graph)
            .iter()
            .map(|c| Chain {
                uids: c
                    .nodes
                    .iter()
                    .map(|&n| graph.nodes[n].uid().to_string())
                    .collect(),
                parallelism: c.parallelism,
                source: c
                    .nodes
                    .first()
                    .is_some_and(|&n| matches!(graph.nodes[n].kind, NodeKind::Source(_))),
            })
            .collect();
        LoadHistory {
            chains,
            samples: Mutex::new(VecDeque::new()),
        }
    }

    /// Takes a sample from the workers' latest heartbeats, if every task of
    /// the running attempt has reported (a partial sum would look like a drop).
    pub fn sample(&self, inner: &Inner) {
        let attempt = inner.attempt.number;
        let mut chains = vec![Totals::default(); self.chains.len()];
        let mut reported = vec![0u32; self.chains.len()];
        for worker in inner.workers.values() {
            for load in worker.loads.iter().filter(|l| l.attempt == attempt) {
                let Some(task) = &load.task else { continue };
                let Some(totals) = chains.get_mut(task.chain as usize) else {
                    continue;
                };
                totals.elapsed_ns += load.elapsed_ns;
                totals.idle_ns += load.idle_ns;
                totals.backpressured_ns += load.backpressured_ns;
                reported[task.chain as usize] += 1;
            }
            for o in &worker.counters.operators {
                for (chain, totals) in self.chains.iter().zip(chains.iter_mut()) {
                    if chain.uids.first() != Some(&o.uid) {
                        continue;
                    }
                    totals.records += if chain.source {
                        o.records_out
                    } else {
                        o.records_in
                    };
                    if chain.source && !o.split_lags.is_empty() {
                        let lag: i64 = o.split_lags.iter().map(|l| l.lag.max(0)).sum();
                        totals.backlog = Some(totals.backlog.unwrap_or(0) + lag);
                    }
                }
            }
        }
        let complete = self
            .chains
            .iter()
            .zip(&reported)
            .all(|(c, &n)| n == c.parallelism);
        if attempt == 0 || !complete {
            return;
        }
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.retain(|s| s.attempt == attempt);
        samples.push_back(Sample {
            at: Instant::now(),
            attempt,
            chains,
        });
        while samples.len() > SAMPLES_KEPT {
            samples.pop_front();
        }
    }

    /// The load over the last `window`: from the newest sample of the running
    /// attempt at least `window` old (the oldest, while there is none) to the
    /// newest. Samples come about a second apart, so the span covers the
    /// window once the attempt has run that long, and not much more.
    pub fn over(&self, window: Duration) -> v1::JobLoad {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let Some(last) = samples.back() else {
            return v1::JobLoad::default();
        };
        let attempt = samples.iter().filter(|s| s.attempt == last.attempt);
        let Some(first) = attempt
            .clone()
            .rev()
            .find(|s| last.at.duration_since(s.at) >= window)
            .or_else(|| attempt.clone().next())
        else {
            return v1::JobLoad::default();
        };
        let seconds = last.at.duration_since(first.at).as_secs_f64();
        let chains = self
            .chains
            .iter()
            .zip(first.chains.iter().zip(&last.chains))
            .map(|(chain, (a, b))| chain_load(chain, a, b, seconds))
            .collect();
        v1::JobLoad {
            covered_ms: last.at.duration_since(first.at).as_millis() as u64,
            chains,
        }
    }
}

/// One chain's load between totals `a` and, `seconds` later, `b`.
fn chain_load(chain: &Chain, a: &Totals, b: &Totals, seconds: f64) -> v1::ChainLoad {
    let elapsed = b.elapsed_ns.saturating_sub(a.elapsed_ns) as f64;
    let idle = b.idle_ns.saturating_sub(a.idle_ns) as f64;
    let backpressured = b.backpressured_ns.saturating_sub(a.backpressured_ns) as f64;
    let share = |part: f64| {
        if elapsed > 0.0 {
            (part / elapsed).clamp(0.0, 1.0)
        } else {
            0.0
        }
    };
    let per_second = |delta: f64| if seconds > 0.0 { delta / seconds } else { 0.0 };
    v1::ChainLoad {
        name: chain.uids.join(" -> "),
        parallelism: chain.parallelism,
        source: chain.source,
        busy: (1.0 - share(idle) - share(backpressured)).max(0.0),
        backpressured: share(backpressured),
        records_per_second: per_second(b.records.saturating_sub(a.records) as f64),
        backlog: b.backlog,
        backlog_per_second: match (a.backlog, b.backlog) {
            (Some(x), Some(y)) => per_second((y - x) as f64),
            _ => 0.0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(elapsed_s: u64, idle_s: u64, bp_s: u64, records: u64, backlog: i64) -> Totals {
        Totals {
            elapsed_ns: elapsed_s * 1_000_000_000,
            idle_ns: idle_s * 1_000_000_000,
            backpressured_ns: bp_s * 1_000_000_000,
            records,
            backlog: Some(backlog),
        }
    }

    #[test]
    fn the_load_spans_the_whole_window_once_the_attempt_ran_that_long() {
        let history = LoadHistory {
            chains: vec![Chain {
                uids: vec!["sum".into()],
                parallelism: 1,
                source: false,
            }],
            samples: Mutex::new(VecDeque::new()),
        };
        let now = Instant::now();
        let at = |ms: u64| now.checked_sub(Duration::from_millis(ms)).unwrap();
        {
            let mut samples = history.samples.lock().unwrap();
            // An earlier attempt's sample, then this one's every 1.2 s.
            samples.push_back(Sample {
                at: at(20_000),
                attempt: 1,
                chains: vec![totals(0, 0, 0, 0, 0)],
            });
            for i in 0..10u64 {
                samples.push_back(Sample {
                    at: at(10_800 - i * 1_200),
                    attempt: 2,
                    chains: vec![totals(i, i / 2, 0, i * 100, 0)],
                });
            }
        }
        let load = history.over(Duration::from_secs(10));
        assert_eq!(load.covered_ms, 10_800);
        assert!((load.chains[0].busy - 5.0 / 9.0).abs() < 1e-9, "{load:?}");
        // A window longer than the attempt: what there is.
        assert_eq!(history.over(Duration::from_secs(60)).covered_ms, 10_800);
        assert_eq!(history.over(Duration::from_secs(2)).covered_ms, 2_400);
    }

    #[test]
    fn a_chains_load_is_the_difference_of_two_samples() {
        let chain = Chain {
            uids: vec!["gen".into(), "map".into()],
            parallelism: 2,
            source: true,
        };
        // Two subtasks over 10 s: 20 s of task time, 5 idle, 3 backpressured.
        let a = totals(100, 40, 10, 1_000, 500);
        let b = totals(120, 45, 13, 6_000, 1_500);
        let load = chain_load(&chain, &a, &b, 10.0);
        assert_eq!(load.name, "gen -> map");
        assert!((load.busy - 0.6).abs() < 1e-9, "{}", load.busy);
        assert!((load.backpressured - 0.15).abs() < 1e-9);
        assert!((load.records_per_second - 500.0).abs() < 1e-9);
        assert_eq!(load.backlog, Some(1_500));
        assert!((load.backlog_per_second - 100.0).abs() < 1e-9);
    }
}
